#!/usr/bin/env bash
# Installs everything and runs the whole test suite: unit, integration (newest e2b SDK), then the SDK suite on e2b==2.45.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> second SDK environment: e2b==2.45.1"
[ -x .venv-e2b245/bin/python ] || python3 -m venv .venv-e2b245
.venv-e2b245/bin/pip install -q -e . "e2b==2.45.1" pytest pytest-asyncio 2>&1 | grep -v -i warning || true

echo "==> unit and integration tests (e2b $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("e2b"))'))"
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
echo "==> SDK integration tests on e2b 2.45.1"
.venv-e2b245/bin/python -m pytest -q -p no:cacheprovider tests/integration/sdk "$@"
