#!/usr/bin/env bash
# Installs everything Corral needs on Debian 12 (as root): system packages, the Python venv, the agent, the base template.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "$(id -u)" -ne 0 ]; then echo "corral: run this as root" >&2; exit 1; fi

echo "==> system packages"
bash scripts/install-system.sh

echo "==> Python environment (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
.venv/bin/pip install -q -e ".[test]" 2>&1 | grep -v -i warning || true
.venv/bin/python -c "import corral, e2b, fastapi, sqlalchemy" # fail loudly if the install did not take

echo "==> in-sandbox agent"
.venv/bin/python -m corral.agent.build

echo "==> base template (cached after the first build)"
.venv/bin/corral template build base ${CORRAL_DATA_DIR:+--data-dir "$CORRAL_DATA_DIR"}
.venv/bin/corral template build code-interpreter-v1 ${CORRAL_DATA_DIR:+--data-dir "$CORRAL_DATA_DIR"}
echo "==> done: $ROOT"
