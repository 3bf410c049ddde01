"""Image message <-> array conversion (crcm_robotics.ros.images) on rosbags' sensor_msgs types.

Guards: every supported encoding decodes to the same RGB with row padding,
whatever container ``data`` is (numpy from rosbags, array.array from rclpy,
bytes); unsupported encodings and inconsistent sizes fail with sentences;
CompressedImage JPEG/PNG decode to RGB; frames are fitted to the model size
by centre crop + area resize; outgoing images survive CDR serialization.
"""

from __future__ import annotations

import array

import numpy as np
import pytest
from _ros_msgs import compressed_msg, header, image_msg, numpy_kit, roundtrip

from crcm_robotics.ros.images import (
    ENCODINGS,
    ImageError,
    compressed_to_rgb,
    encode_rgb,
    fit_frame,
    image_to_rgb,
    is_empty_image,
)
from crcm_robotics.ros.messages import MessageKit, make_image

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_color_encodings_with_row_padding_decode_to_rgb(encoding, pad):
    msg = image_msg(FRAME, encoding, pad=pad)
    assert msg.step == 7 * ENCODINGS[encoding][0] + pad
    np.testing.assert_array_equal(image_to_rgb(msg), FRAME)


def test_mono8_repeats_gray_into_three_channels():
    gray = FRAME[..., :1]
    out = image_to_rgb(image_msg(np.repeat(gray, 3, axis=2), "mono8", pad=2))
    np.testing.assert_array_equal(out, np.repeat(gray, 3, axis=2))


@pytest.mark.parametrize("container", ["bytes", "array", "list", "numpy"])
def test_any_data_container_works(container):
    msg = image_msg(FRAME, "bgr8", pad=1)
    raw = msg.data.tobytes()
    msg.data = {"bytes": raw, "array": array.array("B", raw), "list": list(raw), "numpy": msg.data}[container]
    np.testing.assert_array_equal(image_to_rgb(msg), FRAME)


def test_message_survives_cdr_roundtrip():
    msg = roundtrip(image_msg(FRAME, "bgr8", pad=3), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_rgb(msg), FRAME)


def test_unsupported_encoding_is_named():
    msg = image_msg(FRAME, "rgb8")
    msg.encoding = "16UC1"
    with pytest.raises(ImageError) as err:
        image_to_rgb(msg, "/depth")
    assert (
        str(err.value)
        == "/depth: unsupported image encoding '16UC1'; supported: rgb8, bgr8, rgba8, bgra8, mono8"
    )


def test_inconsistent_sizes_are_errors():
    msg = image_msg(FRAME, "rgb8")
    msg.step = 20
    with pytest.raises(
        ImageError, match=r"/cam: step 20 is smaller than width \* channels = 7 \* 3 = 21 for encoding rgb8"
    ):
        image_to_rgb(msg, "/cam")
    msg = image_msg(FRAME, "rgb8", pad=2)
    msg.data = msg.data[:-30]
    with pytest.raises(
        ImageError,
        match=r"/cam: data has 85 bytes, expected step \* height = 23 \* 5 = 115 for a "
        r"5x7 rgb8 image",
    ):
        image_to_rgb(msg, "/cam")
    msg.height = 0
    with pytest.raises(ImageError, match="empty image"):
        image_to_rgb(msg, "/cam")


def test_unpadded_last_row_is_accepted():
    msg = image_msg(FRAME, "rgb8", pad=4)
    msg.data = msg.data[:-4]  # some drivers omit the final row's padding
    np.testing.assert_array_equal(image_to_rgb(msg), FRAME)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_encode_then_decode(encoding):
    enc = encode_rgb(FRAME, encoding)
    assert (enc.height, enc.width, enc.encoding, enc.step) == (5, 7, encoding, 7 * ENCODINGS[encoding][0])
    kit = numpy_kit()
    msg = roundtrip(make_image(kit, FRAME, header(1.5), encoding), "sensor_msgs/msg/Image")
    assert msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000
    out = image_to_rgb(msg)
    if encoding == "mono8":
        luma = np.rint(FRAME.astype(np.float64) @ [0.299, 0.587, 0.114])
        np.testing.assert_allclose(out[..., 0], luma, atol=1)
    else:
        np.testing.assert_array_equal(out, FRAME)


def test_default_kit_builds_rclpy_style_containers():
    made = {}
    kit = MessageKit(image=lambda **fields: made.update(fields) or fields)
    make_image(kit, FRAME, header(), "bgr8")
    assert isinstance(made["data"], array.array) and made["data"].typecode == "B"
    assert len(made["data"]) == 5 * 7 * 3 and made["is_bigendian"] == 0 and made["step"] == 21
    assert all(type(made[k]) is int for k in ("height", "width", "step"))  # rosidl setters reject numpy ints
    assert kit.f32(np.arange(3, dtype=np.float64)).typecode == "f"


def test_encode_rejects_bad_frames():
    with pytest.raises(ImageError, match=r"expected a uint8 \[H, W, 3\] frame, got float32 \(5, 7, 3\)"):
        encode_rgb(FRAME.astype(np.float32))
    with pytest.raises(ImageError, match="unsupported output encoding 'yuv422'"):
        encode_rgb(FRAME, "yuv422")


def test_compressed_png_is_exact_and_jpeg_is_close():
    np.testing.assert_array_equal(compressed_to_rgb(compressed_msg(FRAME, "png")), FRAME)
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0], smooth[..., 2] = 200, 40  # a red-ish flat image: channel order survives
    out = compressed_to_rgb(compressed_msg(smooth, "bgr8; jpeg compressed bgr8", quality=95))
    assert np.abs(out.astype(int) - smooth).max() <= 3


def test_compressed_errors():
    with pytest.raises(ImageError, match="unsupported CompressedImage format '16UC1; compressedDepth'"):
        compressed_to_rgb(compressed_msg(FRAME, "16UC1; compressedDepth"))
    with pytest.raises(ImageError, match="unsupported CompressedImage format 'h264'"):
        compressed_to_rgb(compressed_msg(FRAME, "h264"))
    msg = compressed_msg(FRAME, "jpeg")
    msg.data = np.frombuffer(b"not an image at all", np.uint8)
    with pytest.raises(ImageError, match=r"/cam: cannot decode CompressedImage \('jpeg', 19 bytes\)"):
        compressed_to_rgb(msg, "/cam")


def test_fit_frame_center_crops_then_area_resizes():
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 2:6] = 100  # the centre square
    wide[:, :2] = 255  # cropped away
    np.testing.assert_array_equal(fit_frame(wide, (2, 2)), np.full((2, 2, 3), 100, np.uint8))
    blocks = np.kron(np.array([[0, 40], [80, 120]], np.uint8), np.ones((3, 3), np.uint8))[..., None].repeat(
        3, 2
    )
    np.testing.assert_array_equal(fit_frame(blocks, (2, 2))[..., 0], [[0, 40], [80, 120]])  # area average
    assert fit_frame(wide, (2, 2), center_crop=False)[0, 0, 0] == 178  # stretched: mean of 255, 255, 100, 100
    assert fit_frame(FRAME, (10, 14)).shape == (10, 14, 3)  # upscaling
    assert fit_frame(FRAME, (5, 7)) is FRAME
    tall = np.zeros((9, 3, 3), np.uint8)
    tall[3:6] = 7
    np.testing.assert_array_equal(fit_frame(tall, (1, 1)), [[[7, 7, 7]]])


def test_is_empty_image():
    empty = image_msg(FRAME)
    empty.height = empty.width = 0
    assert is_empty_image(empty) and not is_empty_image(image_msg(FRAME))
