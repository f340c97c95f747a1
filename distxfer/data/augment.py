"""Training augmentation with ImageDataGenerator's meaning, as stateless TensorFlow ops.

Rotation, shift, shear, zoom and flips are composed into one affine matrix about the image
centre, as Keras' `apply_affine_transform` composes them (rotation @ shift @ shear @ zoom,
then the flips), and applied to a whole batch by one `ImageProjectiveTransformV3` call with
bilinear sampling. Brightness then multiplies the pixels, as PIL's `ImageEnhance.Brightness`
does for ImageDataGenerator. Two deliberate differences from Keras: `width_shift` moves the
image sideways and `height_shift` up and down (Keras swaps them, keras-team/tf-keras#310),
and the centre is the true centre for non-square images too.

Every random draw comes from a stateless op seeded by (seed, epoch, sample id), so a sample
is augmented the same way whichever worker, batch or position it lands in. Each knob has its
own draw, so turning one knob on does not change what the others do.
"""

from __future__ import annotations

import math

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
    """uint8 [B, H, W, C] -> augmented uint8, one transform [B, 8] and factor [B] per image."""
    if not cfg.geometric and not cfg.brightness:
        return images
    x = tf.cast(images, tf.float32)
    if cfg.geometric:
        x = apply_transform(x, transforms, cfg.fill_mode, cfg.fill_value)
    if cfg.brightness:
        x = x * brightness[:, None, None, None]
    return to_uint8(x)


def apply_transform(
    images: tf.Tensor, transforms: tf.Tensor, fill_mode: str = "nearest", fill_value: float = 0.0
) -> tf.Tensor:
    """Bilinear projective warp of float [B, H, W, C] images; fill_value is in pixels, 0..255."""
    height, width = images.shape[1], images.shape[2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    )
