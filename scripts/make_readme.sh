#!/usr/bin/env bash
# README.md from nbs/index.ipynb: nbdev-readme where quarto exists, nbconvert otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v quarto >/dev/null 2>&1; then .venv/bin/nbdev-readme; else .venv/bin/python scripts/make_readme.py "$@"; fi
