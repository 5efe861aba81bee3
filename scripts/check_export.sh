#!/usr/bin/env bash
# Fail when llmops_nb/ is out of step with nbs/: export into a scratch copy and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r pyproject.toml nbs llmops_nb "$tmp"/
(cd "$tmp" && "$OLDPWD/.venv/bin/nbdev-export" >/dev/null)
if ! diff -r -x __pycache__ llmops_nb "$tmp/llmops_nb" >"$tmp/diff.txt"; then
  echo "check-export: llmops_nb/ differs from what nbdev-export makes of nbs/ (edit the notebooks, run nbdev-export, commit both):" >&2
  head -40 "$tmp/diff.txt" >&2
  exit 1
fi
echo "check-export: llmops_nb/ is in step with nbs/"
