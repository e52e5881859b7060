#!/usr/bin/env bash
# Stop the local Ray head started by start-local.sh.
set -euo pipefail
RAY_BIN="${RAY_BIN:-$(command -v ray)}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
"$RAY_BIN" stop --force
