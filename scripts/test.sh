#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine and runs the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Browser tests drive the real dashboard in Debian's headless Chromium.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[test]"
# The code's habits: lint, format and types (the import-layer contract is a test in the suite).
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
# mypy checks the installed names (runlake.core, ...): link the source folders the way
# setuptools' package-dir mapping installs them.
mkdir -p build/typecheck/runlake
for folder in core ingest lake mlflow_store demo app; do ln -sfn "../../../$folder" "build/typecheck/runlake/$folder"; done
.venv/bin/mypy

# The venv's console scripts (runlake) come first, so nothing installed elsewhere is tested by mistake.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
