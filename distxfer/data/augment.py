"""Training augmentation with ImageDataGenerator's meaning, as stateless TensorFlow ops.

Rotation, shift, shear, zoom and flips are composed into one affine matrix about the image
centre, as Keras' `apply_affine_transform` composes them (rotation @ shift @ shear @ zoom,
then the flips), and applied to a whole batch with bilinear sampling by one XLA-compiled
function (`apply_augmentation`); flips alone are row or column reversals, not a warp.
Brightness then multiplies the pixels, as PIL's `ImageEnhance.Brightness` does for
ImageDataGenerator. Two deliberate differences from Keras: `width_shift` moves the
image sideways and `height_shift` up and down (Keras swaps them, keras-team/tf-keras#310),
and the centre is the true centre for non-square images too.

Every random draw comes from a stateless op seeded by (seed, epoch, sample id), so a sample
is augmented the same way whichever worker, batch or position it lands in. Each knob has its
own draw, so turning one knob on does not change what the others do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import tensorflow as tf

from distxfer.config.schema import AugmentConfig
from distxfer.data.decode import resize, to_uint8

_ALG = "philox"  # pinned: "auto_select" may pick a different generator on another device
_RRC_ASPECT = (3 / 4, 4 / 3)  # random resized crop aspect ratios, as Inception and torchvision


def sample_seed(seed: int, epoch: int, sample_id: tf.Tensor) -> tf.Tensor:
    """The [2] int64 stateless seed of one sample in one epoch."""
    base = tf.constant([seed, epoch], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(sample_id, tf.int64), alg=_ALG)


def random_resized_crop(
    image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig, size: tuple[int, int]
) -> tf.Tensor:
    """A random crop of `cfg.random_resized_crop` area fraction and 3/4..4/3 aspect, resized."""
    assert cfg.random_resized_crop is not None
    crop_seed = tf.random.experimental.stateless_split(seed, 2, alg=_ALG)[1]
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=_RRC_ASPECT,
        area_range=tuple(cfg.random_resized_crop),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return resize(tf.slice(image, begin, crop_size), size)


def sample_transform(
    seed: tf.Tensor, cfg: AugmentConfig, size: tuple[int, int]
) -> tuple[tf.Tensor, tf.Tensor]:
    """One sample's random (projective transform [8], brightness factor) for an image of `size`."""
    u = tf.random.stateless_uniform([9], seed=seed, alg=_ALG)

    def symmetric(i: int, limit: float) -> tf.Tensor:  # uniform in [-limit, limit]
        return (2.0 * u[i] - 1.0) * limit

    zoom_lo, zoom_hi = cfg.zoom_range()
    height, width = size
    transform = transform_matrix(
        rotation=symmetric(0, cfg.rotation),
        shift_x=symmetric(1, cfg.width_shift * width),
        shift_y=symmetric(2, cfg.height_shift * height),
        shear=symmetric(3, cfg.shear),
        zoom_x=zoom_lo + (zoom_hi - zoom_lo) * u[4],
        zoom_y=zoom_lo + (zoom_hi - zoom_lo) * u[5],
        flip_x=bool(cfg.horizontal_flip) & (u[6] < 0.5),
        flip_y=bool(cfg.vertical_flip) & (u[7] < 0.5),
        size=size,
    )
    lo, hi = cfg.brightness or (1.0, 1.0)
    return transform, lo + (hi - lo) * u[8]


def transform_matrix(
    *,
    size: tuple[int, int],
    rotation: float | tf.Tensor = 0.0,
    shift_x: float | tf.Tensor = 0.0,
    shift_y: float | tf.Tensor = 0.0,
    shear: float | tf.Tensor = 0.0,
    zoom_x: float | tf.Tensor = 1.0,
    zoom_y: float | tf.Tensor = 1.0,
    flip_x: bool | tf.Tensor = False,
    flip_y: bool | tf.Tensor = False,
) -> tf.Tensor:
    """The 8 projective coefficients mapping output pixels to input pixels, as Keras does.

    Angles are in degrees (positive rotation = counter-clockwise, like `np.rot90`), shifts in
    pixels, zoom as in ImageDataGenerator (below 1 enlarges the content).
    """
    f32 = tf.float32
    theta = tf.cast(rotation, f32) * (math.pi / 180.0)
    phi = tf.cast(shear, f32) * (math.pi / 180.0)
    sx = tf.where(tf.cast(flip_x, tf.bool), -1.0, 1.0)
    sy = tf.where(tf.cast(flip_y, tf.bool), -1.0, 1.0)
    zx, zy = tf.cast(zoom_x, f32) * sx, tf.cast(zoom_y, f32) * sy
    tx, ty = tf.cast(shift_x, f32), tf.cast(shift_y, f32)
    cos, sin = tf.cos(theta), tf.sin(theta)
    # rotation @ shift @ shear @ zoom @ flip, written out (the bottom row is [0, 0, 1]).
    a, b = cos, -sin  # R @ T
    c, d = sin, cos
    e, f = cos * tx - sin * ty, sin * tx + cos * ty
    a, b = a * zx, (a * -tf.sin(phi) + b * tf.cos(phi)) * zy  # (R @ T) @ shear @ zoom
    c, d = c * zx, (c * -tf.sin(phi) + d * tf.cos(phi)) * zy
    cx, cy = (size[1] - 1) / 2.0, (size[0] - 1) / 2.0  # about the centre: C @ M @ C^-1
    e = e + cx - a * cx - b * cy
    f = f + cy - c * cx - d * cy
    return tf.stack([a, b, e, c, d, f, 0.0, 0.0])


def apply_augmentation(
    images: tf.Tensor, transforms: tf.Tensor, brightness: tf.Tensor, cfg: AugmentConfig
) -> tf.Tensor:
    """uint8 [B, H, W, C] -> augmented uint8, one transform [B, 8] and factor [B] per image.

    One XLA-compiled function per augmentation config, the same on the host (in the input
    pipeline) and on the device (inside the training step, `data.augment_on: device`), so a
    sample comes out the same on either side of the same machine."""
    if not cfg.geometric and not cfg.brightness:
        return images
    return _compiled(_key(cfg))(images, transforms, brightness)


def _key(cfg: AugmentConfig) -> tuple:
    """What the compiled function depends on: whether it warps, flips, brightens, and how it
    fills."""
    warps = bool(
        cfg.rotation
        or cfg.width_shift
        or cfg.height_shift
        or cfg.shear
        or cfg.zoom_range() != (1.0, 1.0)
    )
    flips = (bool(cfg.horizontal_flip), bool(cfg.vertical_flip))
    return (warps, flips, bool(cfg.brightness), cfg.fill_mode, float(cfg.fill_value))


@functools.cache
def _compiled(key: tuple) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
    warps, (flip_x, flip_y), brightness, fill_mode, fill_value = key

    def augment(images: tf.Tensor, transforms: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
        if warps:
            x = apply_transform(images, transforms, fill_mode, fill_value)
        else:  # flips alone move whole rows or columns: no sampling, the same pixels
            x = images
            for on, axis, coefficient in ((flip_x, 2, 0), (flip_y, 1, 4)):
                if on:
                    flipped = transforms[:, coefficient] < 0
                    x = tf.where(flipped[:, None, None, None], tf.reverse(x, [axis]), x)
            if not brightness:
                return x
            x = tf.cast(x, tf.float32)
        if brightness:
            x = x * factors[:, None, None, None]
        return to_uint8(x)

    return tf.function(augment, jit_compile=True)


def apply_transform(
    images: tf.Tensor, transforms: tf.Tensor, fill_mode: str = "nearest", fill_value: float = 0.0
) -> tf.Tensor:
    """Bilinear projective warp of [B, H, W, C] images (any dtype) to float32 pixels.

    Computes what TensorFlow's ImageProjectiveTransformV3 computes (its coordinate mapping for
    each fill mode, its interpolation weights), written as gathers so that XLA fuses it: three
    times faster on a CPU core than the op. fill_value is in pixels, 0..255.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    f32 = tf.float32
    ys, xs = tf.meshgrid(tf.range(height, dtype=f32), tf.range(width, dtype=f32), indexing="ij")
    t = tf.cast(transforms, f32)[:, :, None, None]
    projection = t[:, 6] * xs + t[:, 7] * ys + 1.0
    x = _map_coordinate((t[:, 0] * xs + t[:, 1] * ys + t[:, 2]) / projection, width, fill_mode)
    y = _map_coordinate((t[:, 3] * xs + t[:, 4] * ys + t[:, 5]) / projection, height, fill_mode)
    x0, y0 = tf.floor(x), tf.floor(y)
    x1, y1 = x0 + 1.0, y0 + 1.0
    flat = tf.reshape(images, [-1, channels])
    first = (tf.range(tf.shape(images)[0]) * (height * width))[:, None, None]
    fill = tf.cast(fill_value, f32)

    def read(yy: tf.Tensor, xx: tf.Tensor) -> tf.Tensor:
        inside = (xx >= 0) & (xx < width) & (yy >= 0) & (yy < height)
        yi = tf.clip_by_value(tf.cast(yy, tf.int32), 0, height - 1)
        xi = tf.clip_by_value(tf.cast(xx, tf.int32), 0, width - 1)
        values = tf.cast(tf.gather(flat, first + yi * width + xi), f32)
        return tf.where(inside[..., None], values, fill)

    wx0, wx1 = (x1 - x)[..., None], (x - x0)[..., None]
    top = wx0 * read(y0, x0) + wx1 * read(y0, x1)
    bottom = wx0 * read(y1, x0) + wx1 * read(y1, x1)
    out = (y1 - y)[..., None] * top + (y - y0)[..., None] * bottom
    return tf.where((projection == 0)[..., None], fill, out)


def _map_coordinate(c: tf.Tensor, size: int, fill_mode: str) -> tf.Tensor:
    """An input coordinate outside [0, size - 1] mapped back in, as TensorFlow's fill modes do."""
    if fill_mode == "constant":
        return c
    last = float(size - 1)
    if size <= 1:
        return tf.zeros_like(c)
    if fill_mode == "reflect":  # [abcd] -> [dcba|abcd|dcba]
        sz2 = 2.0 * size
        low = sz2 * tf.floor(-c / sz2) + c
        low = tf.where(low < -size, low + sz2, -low - 1.0)
        high = c - sz2 * tf.floor(c / sz2)
        high = tf.where(high >= size, sz2 - high - 1.0, high)
        c = tf.where(c < 0, low, tf.where(c > last, high, c))
    elif fill_mode == "wrap":  # [abcd] -> [abcd|abcd|abcd]
        low = c + size * (tf.floor(-c / last) + 1.0)
        high = c - size * tf.floor(c / last)
        c = tf.where(c < 0, low, tf.where(c > last, high, c))
    return tf.clip_by_value(c, 0.0, last)


def augment_parameters(transforms: tf.Tensor, brightness: tf.Tensor) -> tf.Tensor:
    """A batch's draws as one float32 [B, 9] tensor (transform, brightness): what the input
    pipeline hands the training step under `data.augment_on: device`."""
    return tf.concat([tf.cast(transforms, tf.float32), tf.cast(brightness, tf.float32)[:, None]], 1)


def augment_on_device(cfg: AugmentConfig) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """What the training step applies to (uint8 images [B, H, W, C], `augment_parameters`)."""

    def augment(images: tf.Tensor, parameters: tf.Tensor) -> tf.Tensor:
        return apply_augmentation(images, parameters[:, :8], parameters[:, 8], cfg)

    return augment
