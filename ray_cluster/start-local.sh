#!/usr/bin/env bash
# Start a local Ray head that `ray job submit` can reach (what `make demo` uses).
#
# Ray 2.60 enables token authentication as soon as ~/.ray/auth_token exists (an
# in-process ray.init() writes one), and then `ray start` and `ray job submit` disagree
# unless RAY_AUTH_MODE is the same for both. We set it here and print the value the
# submitting shell must use: export the printed lines (eval "$(ray_cluster/start-local.sh)").
# Loopback only: the dashboard/job server binds 127.0.0.1.
set -euo pipefail
RAY_BIN="${RAY_BIN:-$(command -v ray)}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
PORT="${RAY_DASHBOARD_PORT:-8265}"
CPUS="${RAY_NUM_CPUS:-$(nproc)}"
"$RAY_BIN" stop --force >/dev/null 2>&1 || true
"$RAY_BIN" start --head --node-ip-address 127.0.0.1 --num-cpus "$CPUS" --include-dashboard=true --dashboard-host 127.0.0.1 \
    --dashboard-port "$PORT" --disable-usage-stats >&2
for _ in $(seq 1 60); do
    if "$RAY_BIN" job list --address "http://127.0.0.1:$PORT" >/dev/null 2>&1; then
        echo "export RAY_AUTH_MODE=$RAY_AUTH_MODE"
        echo "export RAY_ADDRESS=http://127.0.0.1:$PORT"
        exit 0
    fi
    sleep 1
done
echo "the Ray job server did not come up on port $PORT" >&2
exit 1
