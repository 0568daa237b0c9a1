#!/usr/bin/env bash
# A fresh machine: install toad (pip, editable) and run the default experiment,
# configs/default.yaml in all three modes. The first run compiles the data path
# (numba, cached); the whole takes about 3 minutes on a 2-CPU VM.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e . 2>&1 | grep -v -e 'Running pip as the' -e 'notice' || true
exec toad compare "$@"
