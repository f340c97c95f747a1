#!/usr/bin/env bash
# Plain mpirun (OpenMPI): Horovod by default, or MultiWorkerMirroredStrategy with --multiworker
# (worker addresses are exchanged with mpi4py, so no TF_CONFIG is needed).
#
#   launch/mpirun.sh -np 4 -c configs/resnet50.yaml
#   launch/mpirun.sh -np 8 -H node1:4,node2:4 -c configs/resnet50.yaml
#   launch/mpirun.sh --multiworker -np 2 -c configs/demo.yaml
#
# Everything from -c on is passed to `distxfer train`.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
np=$(default_np) hosts="" engine=horovod
while [ $# -gt 0 ]; do
    case "$1" in
        -np|-n) np=$2; shift 2 ;;
        -H|--host) hosts=$2; shift 2 ;;
        --multiworker) engine=multiworker; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "mpirun.sh: pass -c CONFIG [overrides] for distxfer train" >&2; exit 2; }
extra=(--bind-to none --map-by slot -x PATH -x LD_LIBRARY_PATH -x PYTHONPATH -x TF_CPP_MIN_LOG_LEVEL)
[ "$(id -u)" = 0 ] && extra+=(--allow-run-as-root)
[ -n "$hosts" ] && extra+=(-H "$hosts")
run mpirun -np "$np" "${extra[@]}" "$DISTXFER" train "engine.name=$engine" "$@"
