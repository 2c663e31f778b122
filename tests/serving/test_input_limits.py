"""The limits on a submitted photo, at their boundaries: bytes, and pixels declared in the header.

Pillow refuses headers beyond twice its own ``MAX_IMAGE_PIXELS`` (about 179 million pixels) by itself, so a
"bomb" of 100,000 x 100,000 says nothing about prodtype's limit: these tests use sizes that Pillow opens
without complaint, which only prodtype's check refuses.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from prodtype.serving import predictions
from prodtype.serving.errors import InvalidInputError, PayloadTooLargeError
from prodtype.serving.predictions import Submission
from service_support import images

BYTES = 100_000


def test_a_header_within_pillows_limit_but_over_ours_is_refused() -> None:
    # Precondition: Pillow itself opens this header without error or warning; only our limit can refuse it.
    assert Image.MAX_IMAGE_PIXELS > 8_000 * 8_000
    with pytest.raises(
        InvalidInputError, match=r"declares 8000x8000 = 64,000,000 pixels; at most 40,000,000"
    ):
        predictions.check_submission(Submission("Mug", image=images.bomb_png(8_000, 8_000)), BYTES)


def test_the_pixel_limit_is_inclusive() -> None:
    photo = images.photo()
    with Image.open(io.BytesIO(photo)) as img:
        width, height = img.size
    pixels = width * height
    checked = predictions.check_submission(Submission("Mug", image=photo), BYTES, max_image_pixels=pixels)
    assert checked.image == photo and checked.image_type == "image/jpeg"
    with pytest.raises(InvalidInputError, match=f"declares {width}x{height} = {pixels:,} pixels; at most"):
        predictions.check_submission(Submission("Mug", image=photo), BYTES, max_image_pixels=pixels - 1)


def test_the_default_pixel_limit_lets_a_large_ordinary_photo_through() -> None:
    # 6000 x 6000 = 36 million pixels: a large camera photo, under the default 40 million.
    checked = predictions.check_submission(Submission("Mug", image=images.bomb_png(6_000, 6_000)), BYTES)
    assert checked.image_type == "image/png"


def test_the_byte_limit_is_inclusive() -> None:
    at_limit = images.oversized_jpeg(BYTES)
    assert len(at_limit) == BYTES
    accepted = predictions.check_submission(Submission("Mug", image=at_limit), BYTES).image
    assert accepted is not None and accepted.startswith(images.photo()[:2])  # kept (less its padding)
    with pytest.raises(PayloadTooLargeError, match=f"the image is {BYTES + 1} bytes; the limit is {BYTES}"):
        predictions.check_submission(Submission("Mug", image=images.oversized_jpeg(BYTES + 1)), BYTES)
