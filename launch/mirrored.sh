#!/usr/bin/env bash
# MirroredStrategy: one process driving every local GPU. On a CPU-only machine it mirrors over
# N logical CPU devices instead (default 2), which is how to try it without GPUs.
#
#   launch/mirrored.sh -c configs/resnet50.yaml
#   launch/mirrored.sh --cpu-replicas 2 -c configs/demo.yaml
#
# Everything from -c on is passed to `distxfer train`.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
exec "$PY" -m distxfer.launchers mirrored --script "$0" --distxfer "$DISTXFER" "$@"
