"""Encoded image bytes -> uint8 pixels of a fixed size, as TensorFlow graph ops.

One decoder for JPEG, PNG, GIF (first frame), BMP and WebP, whatever the file's own layout:
grayscale, RGBA (alpha dropped), palette, CMYK JPEG, 16-bit PNG (high byte kept) all come out
as 3-channel RGB, or as 1 channel for `color_mode: grayscale`. The quick scan
(`distxfer.data.scan`) rejects beforehand the few kinds this decoder gets wrong or fails on.
"""

from __future__ import annotations

import tensorflow as tf

# ITU-R 601 luma, as Pillow's "L" conversion; the weights sum to 1, so gray input stays exact.
_LUMA = (0.299, 0.587, 0.114)


def decode_image(data: tf.Tensor, channels: int) -> tf.Tensor:
    """uint8 [H, W, channels] from the bytes of an image file (channels 1 or 3)."""
    # Always decode to RGB: TensorFlow refuses channels=1 for BMP files.
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return to_grayscale(image) if channels == 1 else image


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """uint8 [..., 3] RGB -> uint8 [..., 1] luma, rounded."""
    luma = tf.tensordot(tf.cast(image, tf.float32), tf.constant(_LUMA), axes=1)
    return to_uint8(luma[..., None])


def resize(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """uint8 image -> uint8 [size[0], size[1], C], bilinear with antialiasing when shrinking."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return to_uint8(resized)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Round and clip float pixels in 0..255 to uint8."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def load_image(path: tf.Tensor, size: tuple[int, int], channels: int) -> tf.Tensor:
    """Read, decode and resize one image file."""
    return resize(decode_image(tf.io.read_file(path), channels), size)
