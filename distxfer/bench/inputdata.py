"""The data `distxfer bench input` reads: a folder of small JPEGs and a folder of large photos.

Both are drawn, not downloaded: smooth colour fields with texture and sensor-like noise, so JPEG
sizes and decode costs are those of real pictures. The large photos also carry fine stripes,
which a resize without antialiasing turns into visible moire: that is what the benchmark's PSNR
against an antialiased full decode measures. Pure numpy and Pillow, no TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

CLASSES = 4


def write_jpeg_folder(root: str, count: int, size: int, *, unique: int = 400) -> str:
    """`count` JPEGs of size x size in CLASSES class folders under `root` (`unique` distinct
    pictures, the rest hard links to them: decoding costs the same)."""
    rng = np.random.default_rng(0)
    return _write(root, count, unique, lambda: picture(rng, size, size, stripes=False), 90)


def write_photo_folder(
    root: str, count: int, *, width: int = 4000, height: int = 3000, unique: int = 6
) -> str:
    """`count` photo-sized JPEGs (12 megapixels by default) in CLASSES class folders."""
    rng = np.random.default_rng(1)
    return _write(root, count, unique, lambda: picture(rng, height, width, stripes=True), 92)


def _write(root: str, count: int, unique: int, draw, quality: int) -> str:
    first: list[str] = []
    for i in range(count):
        path = os.path.join(root, f"class{i % CLASSES}", f"{i:06d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if i < unique:
            Image.fromarray(draw()).save(path, quality=quality)
            first.append(path)
        else:
            os.link(first[i % len(first)], path)
    return root


def picture(rng: np.random.Generator, height: int, width: int, *, stripes: bool) -> np.ndarray:
    """uint8 [height, width, 3]: a smooth random colour field, texture, stripes and noise."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    detail = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16)), dtype=np.uint8)
    texture = np.asarray(
        Image.fromarray(detail).resize((width, height), Image.Resampling.BILINEAR), np.float32
    )
    image = 0.75 * field + 0.25 * texture[..., None]
    if stripes:  # fine stripes, 3 to 6 pixels a period, in one corner quarter
        y, x = np.mgrid[0 : height // 2, 0 : width // 2].astype(np.float32)
        period = 3.0 + 3.0 * x / (width / 2)
        image[: height // 2, : width // 2] += (40 * np.sin(2 * np.pi * (x + y) / period))[..., None]
    image += rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
