"""magi1.media: what the upload PNG holds, and which first frames are refused before anything is sent."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from magi1 import media
from magi1.errors import InputError


def textured(height: int = 72, width: int = 96, batch: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (height, width, 3) if batch is None else (batch, height, width, 3)
    return rng.random(shape, dtype=np.float32)


def decode_png(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


# --- float → uint8 -----------------------------------------------------------------------------------
def test_to_uint8_clamps_values_outside_0_to_1():
    image = np.array([[[-0.5, 1.5, 7.0]]], np.float32)
    assert media.to_uint8(image).tolist() == [[[0, 255, 255]]]


def test_to_uint8_rounds_half_up():
    # k/255 exactly, and just either side of the half-way points
    values = np.array([0.0, 1 / 255, 0.4 / 255, 0.5 / 255, 0.6 / 255, 127.5 / 255, 254.49 / 255, 1.0], np.float64)
    assert media.to_uint8(values).tolist() == [0, 1, 0, 1, 1, 128, 254, 255]


def test_to_uint8_matches_the_shared_convention_for_float32_images():
    image = textured() * 1.2 - 0.1
    expected = np.floor(np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(media.to_uint8(image), expected)


# --- PNG ------------------------------------------------------------------------------------------------
def test_png_round_trip_is_pixel_exact_to_the_image_given():
    image = textured()
    assert np.array_equal(decode_png(media.encode_png(image)), media.to_uint8(image))


def test_png_keeps_rgb_order():
    image = np.zeros((64, 64, 3), np.float32)
    image[..., 0] = 1.0  # pure red
    pixel = decode_png(media.encode_png(image))[0, 0]
    assert pixel.tolist() == [255, 0, 0]


def test_png_accepts_uint8_pixels_as_they_are():
    pixels = media.to_uint8(textured())
    assert np.array_equal(decode_png(media.encode_png(pixels)), pixels)


@pytest.mark.parametrize("level", [0, 9])
def test_png_is_lossless_at_every_level(level):
    image = textured()
    assert np.array_equal(decode_png(media.encode_png(image, level)), media.to_uint8(image))


# --- validation -----------------------------------------------------------------------------------------
def test_a_batch_and_a_single_image_are_accepted():
    media.validate_first_frames(textured(batch=2))
    media.validate_first_frames(textured())


def test_alpha_channel_is_refused_with_how_to_drop_it():
    with pytest.raises(InputError, match="alpha.*Split Image with Alpha"):
        media.validate_first_frames(np.zeros((1, 64, 64, 4), np.float32))


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_other_channel_counts_are_refused(channels):
    with pytest.raises(InputError, match=f"{channels} channel"):
        media.validate_first_frames(np.zeros((1, 64, 64, channels), np.float32))


@pytest.mark.parametrize("height, width", [(63, 128), (128, 63), (4097, 128), (128, 4097)])
def test_sides_outside_64_to_4096_px_are_refused(height, width):
    with pytest.raises(InputError, match="64…4096"):
        media.validate_first_frames(np.zeros((1, height, width, 3), np.float32))


def test_sides_of_exactly_64_px_are_accepted():
    media.validate_first_frames(np.zeros((1, 64, 64, 3), np.float32))


def test_nan_pixels_are_refused():
    image = textured(batch=1)
    image[0, 3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        media.validate_first_frames(image)


def test_an_empty_batch_is_refused():
    with pytest.raises(InputError, match="empty"):
        media.validate_first_frames(np.zeros((0, 64, 64, 3), np.float32))


def test_a_shape_that_is_not_an_image_is_refused():
    with pytest.raises(InputError, match="shape"):
        media.validate_first_frames(np.zeros((64, 3), np.float32))


def test_integer_pixels_are_refused():
    with pytest.raises(InputError, match="float"):
        media.validate_first_frames(np.zeros((1, 64, 64, 3), np.uint8))
