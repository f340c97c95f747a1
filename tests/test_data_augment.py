"""Augmentation knobs do what ImageDataGenerator's do, the same way for a sample every time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from imagefiles import noise

tf = pytest.importorskip("tensorflow")

from distxfer.config.schema import AugmentConfig  # noqa: E402
from distxfer.data.augment import (  # noqa: E402
    apply_augmentation,
    apply_transform,
    random_resized_crop,
    sample_seed,
    sample_transform,
    transform_matrix,
)
from distxfer.data.decode import to_uint8  # noqa: E402

IMAGE = noise(8, 8, seed=3)


def warp(image: np.ndarray, fill_mode: str = "nearest", fill_value: float = 0.0, **params):
    matrix = transform_matrix(size=image.shape[:2], **params)
    out = apply_transform(tf.cast(image[None], tf.float32), matrix[None], fill_mode, fill_value)
    return to_uint8(out)[0].numpy()


def augment(image: np.ndarray, aug: AugmentConfig, sample_id: int, *, seed=0, epoch=0):
    transform, brightness = sample_transform(
        sample_seed(seed, epoch, sample_id), aug, image.shape[:2]
    )
    return apply_augmentation(tf.constant(image[None]), transform[None], brightness[None], aug)[
        0
    ].numpy()


def drawn(aug: AugmentConfig, sample_id: int) -> np.ndarray:
    return sample_transform(sample_seed(0, 0, sample_id), aug, (8, 8))[0].numpy()


@pytest.mark.parametrize("size", [8, 9])
def test_rotation_by_90_degrees_matches_np_rot90(size):
    image = noise(size, size, seed=1)
    assert np.abs(warp(image, rotation=90).astype(int) - np.rot90(image)).max() <= 1


def test_horizontal_flip_mirrors_left_and_right():
    assert np.array_equal(warp(IMAGE, flip_x=True), IMAGE[:, ::-1])


def test_vertical_flip_mirrors_top_and_bottom():
    assert np.array_equal(warp(IMAGE, flip_y=True), IMAGE[::-1])


def test_width_shift_moves_content_sideways_only():
    assert np.array_equal(warp(IMAGE, shift_x=2)[:, :-2], IMAGE[:, 2:])


def test_height_shift_moves_content_up_and_down_only():
    assert np.array_equal(warp(IMAGE, shift_y=2)[:-2], IMAGE[2:])


def test_zoom_below_one_enlarges_the_content():
    square = np.zeros((16, 16, 1), np.uint8)
    square[6:10, 6:10] = 255
    bright = (warp(square, zoom_x=0.5, zoom_y=0.5) > 127).sum()
    assert 49 <= bright <= 81  # a 4x4 square becomes about 8x8


def test_shear_keeps_the_centre_row_and_slants_the_rest():
    image = noise(9, 9, seed=2)
    sheared = warp(image, shear=30)
    assert np.array_equal(sheared[4], image[4])
    assert not np.array_equal(sheared, image)


@pytest.mark.parametrize(
    ("fill_mode", "expected"),
    [
        ("nearest", np.repeat(IMAGE[:, -1:], 3, axis=1)),
        ("reflect", IMAGE[:, [7, 6, 5]]),
        ("wrap", IMAGE[:, :3]),
        ("constant", np.full((8, 3, 3), 7, np.uint8)),
    ],
)
def test_fill_mode_fills_uncovered_pixels_like_keras(fill_mode, expected):
    shifted = warp(IMAGE, fill_mode=fill_mode, fill_value=7, shift_x=3)
    assert np.array_equal(shifted[:, 5:], expected)


def test_brightness_multiplies_pixel_values():
    out = augment(IMAGE, AugmentConfig(brightness=[2.0, 2.0]), sample_id=0)
    assert np.array_equal(out, np.minimum(IMAGE.astype(int) * 2, 255).astype(np.uint8))


def test_rotation_angles_stay_within_the_range_and_use_it():
    angles = [
        math.degrees(math.atan2(m[3], m[0]))
        for m in (drawn(AugmentConfig(rotation=30), i) for i in range(40))
    ]
    assert max(abs(a) for a in angles) <= 30.0001
    assert min(angles) < -15 and max(angles) > 15


def test_shifts_stay_within_their_fraction_of_the_image():
    offsets = [drawn(AugmentConfig(width_shift=0.25), i)[2] for i in range(40)]
    assert max(abs(o) for o in offsets) <= 2.0001  # 0.25 of 8 pixels
    assert max(abs(o) for o in offsets) > 1


def test_flip_is_drawn_for_about_half_the_samples():
    outs = [augment(IMAGE, AugmentConfig(horizontal_flip=True), i) for i in range(40)]
    flipped = sum(np.array_equal(o, IMAGE[:, ::-1]) for o in outs)
    unchanged = sum(np.array_equal(o, IMAGE) for o in outs)
    assert flipped + unchanged == 40 and 8 <= flipped <= 32


def test_augmentation_is_the_same_for_the_same_sample_and_epoch():
    aug = AugmentConfig(rotation=40, zoom=0.2, horizontal_flip=True, brightness=[0.7, 1.3])
    first = augment(IMAGE, aug, sample_id=5, seed=1, epoch=2)
    assert np.array_equal(first, augment(IMAGE, aug, sample_id=5, seed=1, epoch=2))
    assert not np.array_equal(first, augment(IMAGE, aug, sample_id=6, seed=1, epoch=2))
    assert not np.array_equal(first, augment(IMAGE, aug, sample_id=5, seed=1, epoch=3))


def test_turning_a_knob_on_leaves_the_other_knobs_draws_alone():
    base = AugmentConfig(rotation=30, width_shift=0.2)
    more = AugmentConfig(rotation=30, width_shift=0.2, brightness=[0.5, 1.5], shear=10)
    for i in range(10):
        a, b = drawn(base, i), drawn(more, i)
        assert math.atan2(a[3], a[0]) == pytest.approx(math.atan2(b[3], b[0]), abs=1e-6)


def test_random_resized_crop_gives_the_output_size_and_depends_on_the_seed():
    aug = AugmentConfig(random_resized_crop=[0.2, 0.5])
    image = tf.constant(noise(32, 24, seed=4))
    crops = [
        random_resized_crop(image, sample_seed(0, 0, i), aug, (8, 8)).numpy() for i in (1, 1, 2)
    ]
    assert crops[0].shape == (8, 8, 3) and crops[0].dtype == np.uint8
    assert np.array_equal(crops[0], crops[1])
    assert not np.array_equal(crops[0], crops[2])


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_the_warp_computes_what_tensorflows_projective_transform_computes(fill_mode):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 9, 11, 3)).astype(np.float32)
    transforms = tf.stack(
        [
            transform_matrix(
                size=(9, 11),
                rotation=rng.uniform(-180, 180),
                shift_x=rng.uniform(-25, 25),
                shift_y=rng.uniform(-25, 25),
                shear=rng.uniform(-40, 40),
                zoom_x=rng.uniform(0.3, 3),
                zoom_y=rng.uniform(0.3, 3),
            )
            for _ in range(6)
        ]
    )
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=[9, 11],
        fill_value=7.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    ).numpy()
    ours = apply_transform(images, transforms, fill_mode, 7.0).numpy()
    compiled = tf.function(lambda x, t: apply_transform(x, t, fill_mode, 7.0), jit_compile=True)
    assert np.array_equal(ours, reference)  # the same arithmetic, eagerly
    assert np.abs(compiled(images, transforms).numpy() - reference).max() < 0.01  # XLA fuses


def test_flips_alone_mirror_whole_rows_as_the_warp_would():
    aug = AugmentConfig(horizontal_flip=True, vertical_flip=True)
    images = tf.constant(np.stack([noise(8, 8, seed=i) for i in range(16)]))
    draws = [sample_transform(sample_seed(0, 0, i), aug, (8, 8)) for i in range(16)]
    transforms = tf.stack([t for t, _ in draws])
    brightness = tf.stack([b for _, b in draws])
    flipped = apply_augmentation(images, transforms, brightness, aug).numpy()
    warped = to_uint8(apply_transform(tf.cast(images, tf.float32), transforms)).numpy()
    assert np.array_equal(flipped, warped)
    assert any(not np.array_equal(f, i) for f, i in zip(flipped, images.numpy()))
