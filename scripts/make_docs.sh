#!/usr/bin/env bash
# Static HTML of every notebook: nbdev-docs where quarto exists, nbconvert (offline) otherwise, into _docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v quarto >/dev/null 2>&1; then exec .venv/bin/nbdev-docs; fi
mkdir -p _docs
.venv/bin/jupyter nbconvert --to html --output-dir _docs nbs/*.ipynb runbooks/*.ipynb
echo "docs: _docs/index.html"
