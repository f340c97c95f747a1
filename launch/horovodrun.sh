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
np=$(default_np) hosts="" mode=()
while [ $# -gt 0 ]; do
    case "$1" in
        -np|--num-proc) np=$2; shift 2 ;;
        -H|--hosts) hosts=$2; shift 2 ;;
        --gloo|--mpi) mode=("$1"); shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "horovodrun.sh: pass -c CONFIG [overrides] for distxfer train" >&2; exit 2; }
[ -n "$hosts" ] || hosts="localhost:$np"
run "${BIN}horovodrun" "${mode[@]}" -np "$np" -H "$hosts" "$DISTXFER" train engine.name=horovod "$@"
