#!/usr/bin/env bash
# One-command set-up of distxfer: system packages (when we may install them), a virtual
# environment with distxfer and its dependencies, and Horovod built for that TensorFlow.
#
#   launch/setup.sh                 CPU or GPU TensorFlow, chosen by whether nvidia-smi sees a GPU
#   launch/setup.sh --gpu           force tensorflow[and-cuda];  --cpu forces tensorflow-cpu
#   launch/setup.sh --no-system     do not apt-get anything (no root on a cluster login node)
#   launch/setup.sh --no-horovod    skip the Horovod build
#
# Environment: DISTXFER_VENV (default .venv), PYTHON (default python3), DISTXFER_CACHE (wheel cache).
# Safe to run again: it reuses the environment and the cached Horovod wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DISTXFER_VENV:-.venv}
PYTHON=${PYTHON:-python3}
system=1 horovod=1 flavour=auto
for arg in "$@"; do
    case "$arg" in
        --no-system) system=0 ;;
        --no-horovod) horovod=0 ;;
        --gpu) flavour=gpu ;;
        --cpu) flavour=cpu ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "[setup] $*"; }

# -- 1. System packages: MPI (for Horovod and mpi4py), PMIx (srun --mpi=pmix), Slurm and munge
#       (the test suite's one-node cluster), a compiler and cmake (the Horovod build).
SYSTEM_PACKAGES=(libopenmpi-dev openmpi-bin libpmix-dev slurmctld slurmd slurm-client munge cmake g++ make)
if [ "$system" = 1 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for pkg in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        sudo=""
        if [ "$(id -u)" != 0 ]; then
            if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
                say "cannot install ${missing[*]} without root; rerun as root or with --no-system"; sudo=skip; fi
        fi
        if [ "$sudo" != skip ]; then
            say "installing system packages: ${missing[*]}"
            # Package scripts must not try to start daemons (there may be no init system).
            guard=0
            if [ ! -e /usr/sbin/policy-rc.d ]; then
                printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
                $sudo chmod +x /usr/sbin/policy-rc.d
                guard=1
            fi
            export DEBIAN_FRONTEND=noninteractive
            $sudo apt-get update -qq
            $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
            [ "$guard" = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
        fi
    fi
fi

# -- 2. The Python environment.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if [ "$flavour" = auto ]; then
    flavour=cpu
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; fi
fi
extras="$flavour,dev"
if command -v mpicc >/dev/null 2>&1 || ldconfig -p 2>/dev/null | grep -q 'libmpi\.so\.40'; then
    extras="$extras,mpi"
fi
say "installing distxfer[$extras] into $VENV"
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -e ".[$extras]"
# The benchmark-only extra distxfer[bench] (`distxfer bench input` times the seeds' loader, tf_keras's
# ImageDataGenerator, which needs scipy; the test suite runs that benchmark). tf_keras declares the
# `tensorflow` distribution, which would pull a second TensorFlow beside tensorflow-cpu, so it is
# installed without its dependencies, at the minor version of the TensorFlow installed above.
say "installing the benchmark extra (tf_keras, scipy)"
"$PY" -m pip install --quiet "scipy>=1.10"
tf_minor=$("$PY" -c 'from importlib import metadata as m
for d in ("tensorflow", "tensorflow-cpu"):
    try: print(".".join(m.version(d).split(".")[:2])); break
    except m.PackageNotFoundError: pass')
"$PY" -m pip install --quiet --no-deps "tf_keras==${tf_minor}.*"  # tf_keras follows TensorFlow's version

# -- 3. Horovod, built for this TensorFlow (cached).
if [ "$horovod" = 1 ]; then
    launch/build_horovod.sh "$PY"
fi

say "done; check what is usable with: $VENV/bin/distxfer doctor"
