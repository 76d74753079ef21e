#!/usr/bin/env bash
# Starts little-key-value with the given arguments (the lc harness calls
# ./run.sh --port=N --working-dir=DIR), building it first if needed.
set -euo pipefail
cd "$(dirname "$0")"
if ! make -q all >/dev/null 2>&1; then
  bash scripts/setup.sh >&2
  make -s all >&2
fi
exec ./build/little-key-value "$@"
