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
cpu_replicas=2
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-replicas) cpu_replicas=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "mirrored.sh: pass -c CONFIG [overrides] for distxfer train" >&2; exit 2; }
extra=()
[ "$(gpu_count)" -gt 0 ] || extra=("engine.cpu_replicas=$cpu_replicas")
run "$DISTXFER" train engine.name=mirrored "${extra[@]}" "$@"
