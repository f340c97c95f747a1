# Shared by the launchers: find distxfer's environment. The launching is distxfer/launchers/.
# shellcheck shell=bash
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DISTXFER_VENV:-$REPO/.venv}
if [ -x "$VENV/bin/distxfer" ]; then
    DISTXFER="$VENV/bin/distxfer" PY="$VENV/bin/python"
else  # distxfer on PATH, and the Python that runs it (its script's #! line)
    DISTXFER=distxfer
    PY=$(sed -n '1s/^#!//p' "$(command -v distxfer || echo /dev/null)" 2>/dev/null || true)
    [ -n "$PY" ] && [ -x "$PY" ] || PY=python3
fi
