#!/usr/bin/env bash
# Build Horovod 0.28.1 against the TensorFlow of one Python environment, and install it there.
#
# Horovod's last release does not build against TensorFlow >= 2.16 as shipped: its
# horovod/tensorflow/xla_mpi_ops.cc includes XLA headers the TF wheels no longer carry.
# We drop that one source from horovod/tensorflow/CMakeLists.txt (it only serves XLA-compiled
# Horovod ops, which distxfer does not use) and build the sdist with gloo, with MPI where an
# MPI compiler is installed, and with NCCL where TensorFlow has CUDA and a GPU is present.
#
# The wheel is cached under $DISTXFER_CACHE/wheels (default ~/.cache/distxfer/wheels), keyed
# by Horovod, TensorFlow and Python versions and the features built, so a second set-up
# installs in seconds.
#
# Usage: launch/build_horovod.sh [PYTHON]      (default: python on PATH)
# Environment: DISTXFER_HOROVOD_GPU=auto|0|1   force the NCCL/CUDA build on or off
#              MAKEFLAGS / HOROVOD_BUILD_JOBS   parallel build jobs (default: number of cores)
set -euo pipefail

PY=${1:-python}
VERSION=0.28.1
CACHE_DIR=${DISTXFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/distxfer}/wheels
say() { echo "[build_horovod] $*"; }

tf_version=$("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null) || {
    echo "[build_horovod] error: TensorFlow is not importable from $PY; install distxfer first" >&2
    exit 1
}
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')

features=gloo
build_env=(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1)
if command -v mpicxx >/dev/null 2>&1; then
    features="$features-mpi"
    build_env+=(HOROVOD_WITH_MPI=1)
else
    build_env+=(HOROVOD_WITHOUT_MPI=1)
fi

want_gpu=${DISTXFER_HOROVOD_GPU:-auto}
if [ "$want_gpu" = auto ]; then
    want_gpu=0
    tf_cuda=$("$PY" -c 'import tensorflow as tf; print(int(tf.test.is_built_with_cuda()))' 2>/dev/null || echo 0)
    if [ "$tf_cuda" = 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        want_gpu=1
    fi
fi
if [ "$want_gpu" = 1 ]; then
    features="$features-nccl"
    build_env+=(HOROVOD_GPU_OPERATIONS=NCCL)
    # tensorflow[and-cuda] ships NCCL as the nvidia-nccl-cu* wheel; point the build at it
    # unless the user already chose an NCCL.
    if [ -z "${HOROVOD_NCCL_HOME:-}" ]; then
        nccl_home=$("$PY" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
        [ -n "$nccl_home" ] && build_env+=(HOROVOD_NCCL_HOME="$nccl_home")
    fi
fi

key="horovod-$VERSION+tf$tf_version.$features-$py_tag"
mkdir -p "$CACHE_DIR"
cached=$(ls "$CACHE_DIR/$key"/horovod-*.whl 2>/dev/null | head -n 1 || true)

if [ -z "$cached" ]; then
    say "building Horovod $VERSION for TensorFlow $tf_version ($features); this takes about 4 minutes on 2 cores"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$VERSION" -d "$work"
    tar xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
    src="$work/horovod-$VERSION"
    cmake_list="$src/horovod/tensorflow/CMakeLists.txt"
    grep -q 'xla_mpi_ops.cc' "$cmake_list" || {
        echo "[build_horovod] error: $cmake_list no longer lists xla_mpi_ops.cc; the fix needs review" >&2
        exit 1
    }
    sed -i '/xla_mpi_ops\.cc/d' "$cmake_list"
    jobs=${HOROVOD_BUILD_JOBS:-$(nproc)}
    env "${build_env[@]}" MAKEFLAGS="${MAKEFLAGS:--j$jobs}" \
        "$PY" -m pip wheel --quiet --no-build-isolation --no-deps -w "$work/dist" "$src"
    mkdir -p "$CACHE_DIR/$key.tmp"
    mv "$work"/dist/horovod-*.whl "$CACHE_DIR/$key.tmp/"
    rm -rf "${CACHE_DIR:?}/$key"
    mv "$CACHE_DIR/$key.tmp" "$CACHE_DIR/$key"
    cached=$(ls "$CACHE_DIR/$key"/horovod-*.whl | head -n 1)
else
    say "using cached wheel $cached"
fi

"$PY" -m pip install --quiet --no-deps --force-reinstall "$cached"
# cloudpickle, psutil and pyyaml are what horovodrun needs at run time.
"$PY" -m pip install --quiet "cloudpickle" "psutil" "pyyaml" "packaging"
"$PY" -c 'import horovod.tensorflow as hvd; print("[build_horovod] installed horovod", hvd.__version__ if hasattr(hvd, "__version__") else "", "gloo=%s mpi=%s nccl=%s" % (hvd.gloo_built(), hvd.mpi_built(), hvd.nccl_built()))'
