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
exec "$PY" -m distxfer.launchers tf-config --script "$0" --distxfer "$DISTXFER" "$@"
