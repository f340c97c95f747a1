"""Write real (and deliberately odd or broken) image files for the data tests, with Pillow.

Encoders return bytes; `write` puts bytes at a path. Kinds Pillow cannot write (16-bit RGB
PNG, 1/4-bit BMP with a chosen palette, BMP with trailing bytes) are built by hand.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image


def gradient(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB image (lossy codecs keep it close), different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [
        (a * x / max(width - 1, 1) + b * y / max(height - 1, 1) + c) % 1.0
        for a, b, c in rng.uniform(0, 1, (3, 3))
    ]
    return (np.stack(channels, -1) * 255).round().astype(np.uint8)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, **options: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(path: str | os.PathLike, data: bytes) -> str:
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def pillow_rgb(data: bytes) -> np.ndarray:
    """How Pillow decodes `data` to RGB: the reference for pixel checks."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (gray for [H, W], RGB for [H, W, 3]) written by hand."""
    height, width = array.shape[:2]
    colour = 0 if array.ndim == 2 else 2
    rows = array.astype(">u2").reshape(height, -1).tobytes()
    stride = len(rows) // height
    raw = b"".join(b"\x00" + rows[i * stride : (i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def bmp(indices: np.ndarray, bits: int, palette: Sequence[tuple[int, int, int]]) -> bytes:
    """A bottom-up palette BMP of `bits` (1, 4 or 8) per pixel, from palette indices [H, W]."""
    height, width = indices.shape
    row_bytes = (bits * width + 31) // 32 * 4
    rows = []
    for row in indices[::-1]:
        packed = 0
        for value in row:
            packed = (packed << bits) | int(value)
        packed <<= row_bytes * 8 - bits * width
        rows.append(packed.to_bytes(row_bytes, "big"))
    table = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
    offset = 14 + 40 + len(table)
    pixels = b"".join(rows)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(pixels), 2835, 2835, len(palette), 0
    )
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + table + pixels


def animated_gif(frames: Sequence[np.ndarray]) -> bytes:
    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def class_tree(
    root: str | os.PathLike,
    counts: dict[str, int],
    *,
    ext: str = ".png",
    size: int = 8,
    seed: int = 0,
) -> list[str]:
    """Class folders under `root` with `counts[name]` tiny distinct images each; their paths."""
    paths = []
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF"}[
        ext.lower()
    ]
    for c, (name, count) in enumerate(sorted(counts.items())):
        for i in range(count):
            image = noise(size, size, seed=seed * 100_003 + c * 10_007 + i)
            paths.append(write(os.path.join(root, name, f"img{i:04d}{ext}"), encode(image, fmt)))
    return paths


def odd_images() -> dict[str, tuple[bytes, np.ndarray, int]]:
    """Decodable files of every odd kind: name -> (bytes, expected RGB pixels, tolerance)."""
    smooth, sharp = gradient(12, 10, seed=1), noise(12, 10, seed=2)
    rgba = np.dstack([sharp, np.arange(120, dtype=np.uint8).reshape(12, 10) * 2])
    deep = (np.arange(12 * 10 * 3).reshape(12, 10, 3) * 181 % 65536).astype(np.uint16)
    frames = [gradient(12, 10, seed=3), gradient(12, 10, seed=4)]
    lossy = {
        "jpeg": encode(smooth, "JPEG", quality=95),
        "jpeg_progressive": encode(smooth, "JPEG", quality=95, progressive=True),
        "jpeg_gray": encode(Image.fromarray(smooth).convert("L"), "JPEG", quality=95),
        "jpeg_cmyk": encode(Image.fromarray(smooth).convert("CMYK"), "JPEG", quality=95),
        "jpeg_trailing_bytes": encode(smooth, "JPEG", quality=95) + b"camera trailer",
    }
    exact = {
        "png_rgb": encode(sharp, "PNG"),
        "png_rgba": encode(rgba, "PNG"),
        "png_gray": encode(Image.fromarray(sharp).convert("L"), "PNG"),
        "png_gray_alpha": encode(Image.fromarray(rgba).convert("LA"), "PNG"),
        "png_palette": encode(Image.fromarray(sharp).convert("P"), "PNG"),
        "png_1bit": encode(Image.fromarray(sharp).convert("1"), "PNG"),
        "gif": encode(Image.fromarray(sharp).convert("P"), "GIF"),
        "gif_animated": animated_gif(frames),
        "bmp_24bit": encode(sharp, "BMP"),
        "bmp_32bit": encode(rgba, "BMP"),
        "bmp_8bit_gray": encode(Image.fromarray(sharp).convert("L"), "BMP"),
        "webp_lossless": encode(sharp, "WEBP", lossless=True),
    }
    out = {name: (data, pillow_rgb(data), 12) for name, data in lossy.items()}  # codec rounding
    out.update({name: (data, pillow_rgb(data), 0) for name, data in exact.items()})
    out["png_16bit_gray"] = (
        png16(deep[..., 0]),
        np.repeat(deep[..., :1] >> 8, 3, -1).astype(np.uint8),
        0,
    )
    out["png_16bit_rgb"] = (png16(deep), (deep >> 8).astype(np.uint8), 0)
    return out


def bad_images() -> dict[str, bytes]:
    """Files TensorFlow 2.21 cannot decode, by what is wrong with them."""
    jpeg = encode(gradient(32, 32), "JPEG", quality=90)
    png = encode(noise(32, 32), "PNG")
    gif = encode(Image.fromarray(noise(32, 32)).convert("P"), "GIF")
    bmp24 = encode(noise(8, 8), "BMP")
    indices = np.arange(64).reshape(8, 8) % 2
    sof = jpeg_marker_offset(jpeg, 0xC0)
    return {
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "jpeg_without_end_marker": jpeg[:-2],
        "jpeg_12bit": jpeg[: sof + 4] + b"\x0c" + jpeg[sof + 5 :],
        "jpeg_hierarchical": jpeg[:sof] + b"\xff\xc5" + jpeg[sof + 2 :],
        "truncated_png": png[: len(png) // 2],
        "png_without_iend": png[:-12],
        "truncated_gif": gif[: len(gif) // 2],
        "text_named_jpg": b"<html><body>404 Not Found</body></html>\n",
        "zero_bytes": b"",
        "bmp_1bit": bmp(indices, 1, [(0, 0, 0), (255, 255, 255)]),
        "bmp_4bit": bmp(indices, 4, [(i * 16, 0, 0) for i in range(16)]),
        "bmp_trailing_bytes": bmp24 + b"\x00\x00",
        "truncated_bmp": bmp24[:-10],
        "tiff": encode(noise(8, 8), "TIFF"),
        "webp_animated": encode(
            Image.fromarray(noise(8, 8)),
            "WEBP",
            save_all=True,
            append_images=[Image.fromarray(noise(8, 8, seed=1))],
        ),
    }


def palette_bmp() -> bytes:
    """An 8-bit BMP with a colour palette: TensorFlow decodes it, but with wrong colours."""
    indices = np.arange(64).reshape(8, 8) % 4
    return bmp(indices, 8, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)])


def jpeg_marker_offset(data: bytes, marker: int) -> int:
    """Where the JPEG segment with `marker` starts, walking the segments from the top."""
    pos = 2
    while data[pos + 1] != marker:
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return pos
