#!/usr/bin/env bash
# Horovod with horovodrun: one process per GPU on this node, or across several hosts.
#
#   launch/horovodrun.sh -c configs/resnet50.yaml                      # all local GPUs (2 processes on CPU)
#   launch/horovodrun.sh -np 4 -c configs/resnet50.yaml data.batch_size=64
#   launch/horovodrun.sh -np 8 -H node1:4,node2:4 -c configs/resnet50.yaml
#   launch/horovodrun.sh --gloo -np 2 -c configs/demo.yaml             # gloo instead of MPI
#
# Everything from -c on is passed to `distxfer train` (config and dotted overrides).
# Several hosts need passwordless ssh between them and the same paths (shared filesystem).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
exec "$PY" -m distxfer.launchers horovodrun --script "$0" --distxfer "$DISTXFER" "$@"
