"""Decoding every odd image kind to the right pixels, checked against Pillow and known arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagefiles import (
    bad_images,
    encode,
    gradient,
    noise,
    odd_images,
    palette_bmp,
    pillow_rgb,
    png16,
)
from PIL import Image

tf = pytest.importorskip("tensorflow")

from distxfer.data.decode import decode_image, decode_resized, resize, to_uint8  # noqa: E402
from distxfer.data.scan import FileCheck, check_file  # noqa: E402

ODD = odd_images()
BAD = bad_images()


def decode(data: bytes, channels: int = 3) -> np.ndarray:
    return decode_image(tf.constant(data), channels).numpy()


def quick(tmp_path, data: bytes, name: str = "x.jpg") -> FileCheck:
    path = tmp_path / name
    path.write_bytes(data)
    return check_file(str(path))


@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_kind_decodes_to_the_reference_pixels(kind):
    data, expected, tolerance = ODD[kind]
    got = decode(data)
    assert got.shape == expected.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance


def test_cmyk_jpeg_colours_are_not_inverted():
    original = gradient(12, 10, seed=1)
    got = decode(encode(Image.fromarray(original).convert("CMYK"), "JPEG", quality=95))
    assert np.abs(got.astype(int) - original).mean() < 6
    assert np.abs(got.astype(int) - (255 - original)).mean() > 40


def test_16_bit_png_is_scaled_to_8_bits_by_its_high_byte():
    values = np.array([[0x0000, 0x00FF, 0x1280, 0x12FF, 0x8000, 0xFFFF]], np.uint16)
    got = decode(png16(values))[..., 0]
    assert got.tolist() == [[0x00, 0x00, 0x12, 0x12, 0x80, 0xFF]]


def test_rgba_png_drops_alpha_and_keeps_colour():
    rgb = noise(6, 6)
    alpha = np.zeros((6, 6, 1), np.uint8)  # fully transparent: colour must still be kept
    got = decode(encode(np.concatenate([rgb, alpha], -1), "PNG"))
    assert np.array_equal(got, rgb)


def test_gif_animation_gives_its_first_frame():
    data, expected, _ = ODD["gif_animated"]
    first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode(data), first)
    assert np.array_equal(expected, first)


def test_grayscale_mode_gives_pillow_luma():
    data = encode(noise(9, 7), "PNG")
    luma = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
    got = decode(data, channels=1)
    assert got.shape == (9, 7, 1)
    assert np.abs(got[..., 0].astype(int) - luma).max() <= 1


def test_grayscale_mode_keeps_gray_images_exact():
    gray = noise(5, 5)[..., 0]
    assert np.array_equal(decode(encode(gray, "PNG"), channels=1)[..., 0], gray)


def test_grayscale_mode_decodes_bmp():  # TensorFlow's own channels=1 refuses every BMP
    data = encode(noise(4, 4), "BMP")
    assert decode(data, channels=1).shape == (4, 4, 1)


def test_resize_gives_the_requested_size_in_uint8():
    image = tf.constant(noise(30, 20))
    out = resize(image, (8, 12))
    assert out.shape == (8, 12, 3) and out.dtype == tf.uint8


def test_resize_keeps_a_flat_colour_exact():
    flat = np.full((31, 17, 3), (10, 200, 255), np.uint8)
    assert np.all(resize(tf.constant(flat), (8, 8)).numpy() == (10, 200, 255))


@pytest.mark.parametrize("kind", sorted(ODD))
def test_quick_scan_accepts_every_kind_tensorflow_decodes(tmp_path, kind):
    assert quick(tmp_path, ODD[kind][0]).problem is None


@pytest.mark.parametrize("kind", sorted(BAD))
def test_quick_scan_rejects_what_tensorflow_cannot_decode(tmp_path, kind):
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode(BAD[kind])
    assert quick(tmp_path, BAD[kind]).problem


def test_quick_scan_rejects_palette_bmp_that_tensorflow_decodes_wrongly(tmp_path):
    data = palette_bmp()
    assert not np.array_equal(decode(data), pillow_rgb(data))  # silently wrong colours
    assert "palette" in quick(tmp_path, data, "x.bmp").problem


def test_a_jpeg_at_its_own_size_decodes_to_the_full_decoders_pixels():
    data = encode(gradient(40, 56, seed=4), "JPEG", quality=90)
    full = decode_image(tf.constant(data), 3).numpy()
    assert np.array_equal(decode_resized(tf.constant(data), (40, 56), 3).numpy(), full)


def test_a_large_jpeg_decoded_shrunk_stays_close_to_an_antialiased_full_decode():
    data = tf.constant(encode(gradient(768, 1024, seed=5), "JPEG", quality=92))
    reference = tf.image.resize(decode_image(data, 3), (64, 64), antialias=True).numpy()
    ours = decode_resized(data, (64, 64), 3).numpy().astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((ours - reference) ** 2))
    assert psnr > 35


@pytest.mark.parametrize(("size", "antialias"), [(24, False), (12, False), (4, True)])
def test_resize_antialiases_only_beyond_a_shrink_of_two(size, antialias):
    image = tf.constant(noise(16, 16, seed=6))
    expected = tf.image.resize(image, (size, size), antialias=antialias)
    assert np.array_equal(resize(image, (size, size)).numpy(), to_uint8(expected).numpy())
