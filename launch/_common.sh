# Shared by the launchers: find distxfer's environment, count GPUs, print then run a command.
# shellcheck shell=bash
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DISTXFER_VENV:-$REPO/.venv}
if [ -x "$VENV/bin/distxfer" ]; then BIN="$VENV/bin/"; else BIN=""; fi
DISTXFER="${BIN}distxfer"

gpu_count() {
    if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
    else echo 0; fi
}

default_np() {  # one process per GPU; 2 on a CPU-only machine, to try things out
    local n
    n=$(gpu_count)
    if [ "${n:-0}" -gt 0 ]; then echo "$n"; else echo 2; fi
}

run() {
    printf '[launch]'; printf ' %q' "$@"; echo
    exec "$@"
}
