#!/usr/bin/env bash
# MultiWorkerMirroredStrategy on this machine: N worker processes with TF_CONFIG on loopback ports.
# For one node, or to try multi-worker training on a laptop. Output lines are prefixed by worker;
# if one worker fails, the others are stopped and its exit status is returned.
#
#   launch/multiworker_local.sh -n 2 -c configs/demo.yaml
#   launch/multiworker_local.sh -n 2 -c configs/demo.yaml engine.threads=1
#
# Everything from -c on is passed to `distxfer train`.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
n=2
while [ $# -gt 0 ]; do
    case "$1" in
        -n|-np) n=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "multiworker_local.sh: pass -c CONFIG [overrides] for distxfer train" >&2; exit 2; }
PY="${BIN}python"; command -v "$PY" >/dev/null 2>&1 || PY=python3
ports=$("$PY" - "$n" <<'PYEOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
)
workers=$(printf '"127.0.0.1:%s",' $ports); workers="[${workers%,}]"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for ((i = 0; i < n; i++)); do
    config="{\"cluster\":{\"worker\":$workers},\"task\":{\"type\":\"worker\",\"index\":$i}}"
    printf '[launch] TF_CONFIG=%q %q train engine.name=multiworker' "$config" "$DISTXFER"; printf ' %q' "$@"; echo
    ( TF_CONFIG=$config "$DISTXFER" train engine.name=multiworker "$@" 2>&1 | sed -u "s/^/[worker $i] /" ;
      exit "${PIPESTATUS[0]}" ) &
    pids+=($!)
done
status=0
for ((i = 0; i < n; i++)); do  # each wait -n returns as one worker ends; stop at the first failure
    wait -n || { status=$?; break; }
done
if [ "$status" != 0 ]; then echo "[launch] a worker exited with status $status; stopping the others" >&2; exit "$status"; fi
