#!/usr/bin/env bash
# A fresh machine: install what the tests need (Debian's iperf 2, socat, tshark, curl
# and iproute2 for the real Linux peers; toad with its test extras) and run the whole
# suite. Root runs every test (TAP devices, network namespaces); pytest arguments
# pass through (e.g. -x, -k NAME, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v iperf  >/dev/null || need_apt+=(iperf)
command -v socat  >/dev/null || need_apt+=(socat)
command -v tshark >/dev/null || need_apt+=(tshark)
command -v curl   >/dev/null || need_apt+=(curl)
command -v ip     >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -m pip install -q -e '.[test]' 2>&1 | grep -v -e 'Running pip as the' -e 'notice' || true

exec python3 -m pytest -q "$@"
