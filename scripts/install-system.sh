#!/usr/bin/env bash
# Installs the system packages Corral needs on Debian 12 (as root): gVisor from bookworm-backports, runc, debootstrap, Go,
# skopeo (pulls base images from a registry the operator configures).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# The backports suite lives on the same mirror the machine already uses for bookworm: derive it from the
# machine's own apt configuration instead of naming a mirror here.
backports_source() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '
      /^URIs:/ {u=$2}
      /^Suites:/ {for (i=2;i<=NF;i++) if ($i=="bookworm") found=u}
      /^$/ {u=""}
      END {print found}' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "corral: cannot find a bookworm source in /etc/apt; add bookworm-backports by hand" >&2
    return 1
  fi
  echo "deb $uri bookworm-backports main"
}

line=$(backports_source)
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "$line" > /etc/apt/sources.list.d/corral-backports.list
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  runc debootstrap e2fsprogs util-linux iproute2 nftables procps psmisc ca-certificates \
  python3 python3-venv python3-pip golang-go git curl skopeo >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >/dev/null
# sed reads the whole output: `head -1` would close the pipe early and pipefail would fail on SIGPIPE (exit 141).
runsc --version | sed -n 1p
