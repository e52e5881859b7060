#!/usr/bin/env bash
# Start a local Ray head that `ray job submit` can reach (what `make demo` uses).
#
# Ray 2.60 enables token authentication as soon as ~/.ray/auth_token exists (an
# in-process ray.init() writes one), and then `ray start` and `ray job submit` disagree
# unless RAY_AUTH_MODE is the same for both. We set it here and print the value the
# submitting shell must use: export the printed lines (eval "$(ray_cluster/start-local.sh)").
# Loopback only: the dashboard/job server binds 127.0.0.1.
#
# Other Ray clusters on this machine are left alone: the head takes free ports (not
# 6379/8265/10001) and runs in its own process group, recorded in $IADR1_RAY_STATE, so
# stop-local.sh stops this head only (never `ray stop`, which stops every Ray here).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
RAY_BIN="${RAY_BIN:-$(command -v ray)}"
PYTHON="$(dirname "$RAY_BIN")/python"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
STATE="${IADR1_RAY_STATE:-${TMPDIR:-/tmp}/iadr1-ray-head-$(id -u)}"
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="${RAY_DASHBOARD_PORT:-$(free_port)}"
GCS_PORT="${RAY_GCS_PORT:-$(free_port)}"
CPUS="${RAY_NUM_CPUS:-$(nproc)}"

# A head of ours left by a killed run goes first.
IADR1_RAY_STATE="$STATE" bash "$HERE/stop-local.sh" >/dev/null 2>&1 || true
mkdir -p "$STATE"
# --block keeps the head in the foreground of its own session: stopping it is one kill of
# its process group. Its output goes to a file, not to whoever captures ours.
setsid "$RAY_BIN" start --head --block --node-ip-address 127.0.0.1 --port "$GCS_PORT" --num-cpus "$CPUS" \
    --ray-client-server-port "$(free_port)" --dashboard-agent-listen-port "$(free_port)" \
    --include-dashboard=true --dashboard-host 127.0.0.1 --dashboard-port "$PORT" --disable-usage-stats \
    >"$STATE/head.log" 2>&1 </dev/null &
HEAD_PID="$!"
echo "$HEAD_PID" >"$STATE/pid"
echo "$GCS_PORT" >"$STATE/gcs_port"
for _ in $(seq 1 90); do
    if "$RAY_BIN" job list --address "http://127.0.0.1:$PORT" >/dev/null 2>&1; then
        echo "export RAY_AUTH_MODE=$RAY_AUTH_MODE"
        echo "export RAY_ADDRESS=http://127.0.0.1:$PORT"
        exit 0
    fi
    if ! kill -0 "$HEAD_PID" 2>/dev/null; then
        break
    fi
    sleep 1
done
echo "the Ray head did not come up (job server port $PORT); its log, $STATE/head.log, ends:" >&2
tail -n 20 "$STATE/head.log" >&2 || true
IADR1_RAY_STATE="$STATE" bash "$HERE/stop-local.sh" >/dev/null 2>&1 || true
exit 1
