"""Decoded, resized images kept between epochs (`data.cache: memory`) and runs (`disk`).

A cache holds every sample of one folder split as uint8 [N, H, W, C], before augmentation,
so each file is decoded once. It is keyed by a fingerprint of the split's paths, labels,
sizes and modification times and of the image size and channels, so any change to the
files or settings builds a new one.

`memory` decodes into RAM at the first epoch. `disk` writes a .npy file under the cache
folder (default `$DISTXFER_CACHE/images`, `DISTXFER_CACHE` defaulting to ~/.cache/distxfer)
through a memmap, temp file then rename, so processes of one node building it at once are
safe and later runs start without decoding; each process then loads it into RAM to train,
because TensorFlow has no graph op that reads one row of a file cheaply.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil

import numpy as np
import tensorflow as tf

from distxfer.atomic import replacing
from distxfer.data.decode import load_image
from distxfer.data.splits import FolderSplit
from distxfer.errors import DataError

log = logging.getLogger("distxfer.data")

CACHE_VERSION = 1
_LOADED: dict[str, tf.Tensor] = {}  # key -> uint8 [N, H, W, C] on the CPU, for this process


def default_cache_dir() -> str:
    root = os.environ.get("DISTXFER_CACHE") or os.path.join("~", ".cache", "distxfer")
    return os.path.join(os.path.expanduser(root), "images")


def cache_key(split: FolderSplit, image_size: tuple[int, int], channels: int) -> str:
    text = f"v{CACHE_VERSION}|{split.fingerprint}|{image_size[0]}x{image_size[1]}x{channels}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_images(
    split: FolderSplit,
    image_size: tuple[int, int],
    channels: int,
    mode: str,
    cache_dir: str | None = None,
) -> tf.Tensor:
    """Every image of `split`, decoded and resized: uint8 [N, H, W, C], built once per process."""
    key = cache_key(split, image_size, channels)
    if key not in _LOADED:
        shape = (len(split), *image_size, channels)
        if mode == "memory":
            _require_memory(shape)
            array = decode_all(split, image_size, channels, np.empty(shape, np.uint8))
        elif mode == "disk":
            array = _load_or_build_file(
                split, image_size, channels, key, cache_dir or default_cache_dir()
            )
        else:
            raise ValueError(f"unknown cache mode {mode!r}")
        with tf.device("/CPU:0"):
            _LOADED[key] = tf.constant(array)
    return _LOADED[key]


def clear_loaded() -> None:
    """Forget the caches this process holds in RAM (files on disk stay)."""
    _LOADED.clear()


def decode_all(
    split: FolderSplit, image_size: tuple[int, int], channels: int, out: np.ndarray
) -> np.ndarray:
    """Decode and resize every sample of `split` into `out` (an array or a memmap)."""
    log.info("caching %d %s images at %dx%d", len(split), split.name, *image_size)
    ds = tf.data.Dataset.from_tensor_slices(list(split.paths))
    ds = ds.map(lambda p: load_image(p, image_size, channels), num_parallel_calls=tf.data.AUTOTUNE)
    start = 0
    for batch in ds.batch(256).prefetch(2).as_numpy_iterator():
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out


def _load_or_build_file(
    split: FolderSplit, image_size: tuple[int, int], channels: int, key: str, folder: str
) -> np.ndarray:
    shape = (len(split), *image_size, channels)
    path = os.path.join(folder, f"{key}-{image_size[0]}x{image_size[1]}x{channels}.npy")
    if not os.path.exists(path):
        _build_file(split, image_size, channels, path, shape)
    else:
        log.info("using the image cache %s", path)
    _require_memory(shape)
    cached = np.load(path, mmap_mode="r", allow_pickle=False)
    if cached.shape != shape or cached.dtype != np.uint8:
        raise DataError(
            f"the image cache {path} has shape {cached.shape}, expected {shape}; "
            "delete it and run again"
        )
    return cached


def _build_file(
    split: FolderSplit,
    image_size: tuple[int, int],
    channels: int,
    path: str,
    shape: tuple[int, ...],
) -> None:
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise DataError(
            f"cannot create the image cache folder {folder} ({error.strerror}); set "
            "DISTXFER_CACHE to a writable folder or use data.cache=memory"
        ) from None
    needed = int(np.prod(shape))
    if needed > free:
        raise DataError(
            f"the image cache needs {needed / 1e9:.1f} GB but {folder} has "
            f"{free / 1e9:.1f} GB free; free space, set DISTXFER_CACHE elsewhere, or "
            "use data.cache=none"
        )
    with replacing(path) as tmp:  # another process may do the same at once: both results are whole
        memmap = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        decode_all(split, image_size, channels, memmap)
        memmap.flush()
        del memmap
    log.info("wrote the image cache %s (%.1f GB)", path, needed / 1e9)


def _require_memory(shape: tuple[int, ...]) -> None:
    needed = int(np.prod(shape))
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(
            f"caching the images needs {needed / 1e9:.1f} GB of RAM but "
            f"{available / 1e9:.1f} GB is available; use data.cache=none or a "
            "smaller data.image_size"
        )


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
