#!/usr/bin/env bash
# Installs the peer baselines the benchmark runs beside Corral: podman (Debian) and llm-sandbox (PyPI, own venv).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends podman >/dev/null
if [ ! -x /opt/llm-sandbox-venv/bin/python ]; then
  python3 -m venv /opt/llm-sandbox-venv
fi
/opt/llm-sandbox-venv/bin/pip install -q 'llm-sandbox[podman]' 2>&1 | grep -v -i warning || true
/opt/llm-sandbox-venv/bin/python -c "import llm_sandbox" && echo "peers ready: podman $(podman --version | awk '{print $3}'), llm-sandbox"
