#!/usr/bin/env bash
# Installs everything, starts Corral in the background, prints an API key and a one-line example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DATA_DIR=${CORRAL_DATA_DIR:-/var/lib/corral}
PORT=${CORRAL_PORT:-3000}
GATEWAY_PORT=${CORRAL_GATEWAY_PORT:-3002}
mkdir -p "$DATA_DIR"

if [ -f "$DATA_DIR/server.pid" ] && kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null; then
  echo "==> Corral already running (pid $(cat "$DATA_DIR/server.pid"))"
else
  echo "==> starting Corral (log: $DATA_DIR/server.log)"
  nohup .venv/bin/corral serve --data-dir "$DATA_DIR" --port "$PORT" --gateway-port "$GATEWAY_PORT" \
    >>"$DATA_DIR/server.log" 2>&1 &
  echo $! > "$DATA_DIR/server.pid"
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { tail -30 "$DATA_DIR/server.log"; exit 1; }
fi

KEY=$(.venv/bin/corral keys create --name "install-$(date +%s)" --data-dir "$DATA_DIR")
cat <<MSG

Corral is running: API http://127.0.0.1:$PORT, gateway http://127.0.0.1:$GATEWAY_PORT
API key: $KEY

Try it:
E2B_API_URL=http://127.0.0.1:$PORT E2B_SANDBOX_URL=http://127.0.0.1:$GATEWAY_PORT E2B_API_KEY=$KEY $(pwd)/.venv/bin/python -c "from e2b import Sandbox; s = Sandbox.create(); print(s.commands.run('uname -a').stdout); s.kill()"
MSG
