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
exec "$PY" -m distxfer.launchers mpirun --script "$0" --distxfer "$DISTXFER" "$@"
