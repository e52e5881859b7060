#!/usr/bin/env bash
# Stop the local Ray head started by start-local.sh, and nothing else.
set -euo pipefail
STATE="${IADR1_RAY_STATE:-${TMPDIR:-/tmp}/iadr1-ray-head-$(id -u)}"
[ -f "$STATE/pid" ] || exit 0
PID="$(cat "$STATE/pid")"
# The live (not zombie) processes of the head's process group, if they are Ray's: a stale
# file may name a reused pid.
live_ray() { ps -eo pgid=,stat=,args= | awk -v g="$PID" '$1 == g && $2 !~ /^Z/ && /ray/ {n++} END {exit n == 0}'; }
if live_ray; then
    kill -TERM -- "-$PID" 2>/dev/null || true
    # Ray's graceful shutdown can take half a minute; a demo head has nothing to save.
    for _ in $(seq 1 5); do
        live_ray || break
        sleep 1
    done
    kill -KILL -- "-$PID" 2>/dev/null || true
fi
# `ray start` recorded this head as the machine's current cluster: do not leave that stale.
# (Ray's temp dir: $RAY_TMPDIR, else $TMPDIR, else /tmp.)
CURRENT="${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray/ray_current_cluster"
if [ -f "$STATE/gcs_port" ] && [ -f "$CURRENT" ] && grep -q ":$(cat "$STATE/gcs_port")\$" "$CURRENT"; then
    rm -f "$CURRENT"
fi
rm -f "$STATE/pid" "$STATE/gcs_port"
