"""`crcm data import-rosbag`: real rosbag2 bags (sqlite3 and mcap) written with rosbags, imported into stores.

Guards: the store validates; each frame gets the command in force at its time
(zero-order hold); frames before the first command are dropped; a camera gap
and a stale command split episodes; rates, sizes, encodings (row padding,
bgr8, CompressedImage) come out right; bad input fails with a sentence.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from _ros_msgs import (
    compressed_msg,
    f32_array,
    image_msg,
    joint_state,
    twist,
    write_bag,
)

from crcm_robotics.cli import main
from crcm_robotics.config import RosbagImportConfig
from crcm_robotics.data import TrajectoryStore, validate_store
from crcm_robotics.data.rosbag import RosbagImportError, header_stamp_from_cdr, import_rosbag

IMG, CIMG = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
TWIST, F32, JS = "geometry_msgs/msg/Twist", "std_msgs/msg/Float32MultiArray", "sensor_msgs/msg/JointState"
T0 = 1_700_000_000.0  # bag times are epoch seconds


def frame(i: int, h: int = 6, w: int = 8) -> np.ndarray:
    """A frame that encodes its index: R = i, G = column, B = row."""
    out = np.zeros((h, w, 3), np.uint8)
    out[..., 0] = i
    out[..., 1] = np.arange(w)[None, :] * 10
    out[..., 2] = np.arange(h)[:, None] * 20
    return out


CMD_TIMES = [0.05, 0.42, 0.81, 1.22, 2.45, 2.75, 3.01, 3.33, 3.62]


def cmd_value(j: int) -> tuple[float, float, float]:
    return (float(j + 1), 0.1 * j, -0.1 * j)


def scripted_messages(encoding: str = "rgb8", pad: int = 3):
    """10 Hz camera, frames 0..39 except 20-24; commands at CMD_TIMES (none between 1.22 and 2.45).

    Expected with max_staleness 0.5: frame 0 (t=0.0) precedes the first command (0.05) -> dropped;
    frames 1..17 are fresh; frames 18, 19 (t=1.8, 1.9 > 1.22 + 0.5) are stale -> the episode ends;
    frames 25..39 form the second episode.
    """
    msgs = [("/cmd_vel", TWIST, T0 + t, twist(*cmd_value(j))) for j, t in enumerate(CMD_TIMES)]
    for i in [i for i in range(40) if not 20 <= i <= 24]:
        t = T0 + i * 0.1
        msgs.append(("/camera/image_raw", IMG, t, image_msg(frame(i), encoding, pad=pad, t=t)))
    msgs.append(("/tf", "std_msgs/msg/String", T0, _string("noise")))
    return msgs


def in_force(t: float) -> tuple[float, float, float]:
    """The command in force at t (zero-order hold), computed independently of the importer."""
    j = max(j for j, c in enumerate(CMD_TIMES) if c <= t + 1e-9)
    return cmd_value(j)


def _string(text):
    from _ros_msgs import T

    return T("std_msgs/msg/String")(data=text)


@pytest.fixture(params=["sqlite3", "mcap"])
def storage(request):
    return request.param


def test_import_aligns_commands_and_splits_on_staleness(tmp_path, storage):
    bag = write_bag(tmp_path / f"bag_{storage}", storage, scripted_messages("bgr8", pad=3))
    out = tmp_path / "robot.zarr"
    summary = import_rosbag(
        bag,
        out,
        camera_topic="/camera/image_raw",
        action_topic="/cmd_vel",
        size=None,
        max_staleness_s=0.5,
        gap_s=1.0,
        progress=False,
    )
    validate_store(out)
    store = TrajectoryStore(out)
    assert store.num_episodes == 2
    assert store.episode_lengths().tolist() == [17, 15]
    ep0, ep1 = store.episode(0), store.episode(1)
    assert ep0["frames"][:, 0, 0, 0].tolist() == list(range(1, 18))  # red channel = frame index: bgr8 decoded
    assert ep1["frames"][:, 0, 0, 0].tolist() == list(range(25, 40))
    np.testing.assert_array_equal(ep0["frames"][3], frame(4))  # padding stripped, channels right
    np.testing.assert_allclose(
        ep0["action"], np.asarray([in_force(i * 0.1) for i in range(1, 18)], np.float32)
    )
    np.testing.assert_allclose(
        ep1["action"], np.asarray([in_force(i * 0.1) for i in range(25, 40)], np.float32)
    )
    assert (
        ep0["action"][:, 0].tolist() == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 5
    )  # which command each frame got
    np.testing.assert_allclose(ep0["timestamp"], T0 + np.arange(1, 18) * 0.1, atol=1e-6)
    al = summary["alignment"]
    assert (al["dropped_before_first_command"], al["dropped_stale"], al["splits_on_staleness"]) == (1, 2, 1)
    assert (al["episodes"], al["frames_kept"], al["frames_total"], al["commands"], al["splits_on_gap"]) == (
        2,
        32,
        35,
        9,
        0,
    )
    assert store.attrs["action_names"] == ["linear.x", "linear.y", "angular.z"]
    assert store.attrs["rosbag"]["camera_topic"] == "/camera/image_raw"
    assert store.fps == pytest.approx(10.0, rel=1e-6)


def test_gap_alone_splits_an_episode(tmp_path, storage):
    msgs = [("/cmd", TWIST, T0 + t, twist(t)) for t in np.arange(0, 4, 0.05)]  # fresh commands throughout
    times = [0.1, 0.2, 0.3, 0.4, 1.6, 1.7, 1.8]  # 1.2 s gap
    msgs += [("/cam", IMG, T0 + t, image_msg(frame(i), "rgb8", t=T0 + t)) for i, t in enumerate(times)]
    bag = write_bag(tmp_path / "bag", storage, msgs)
    summary = import_rosbag(
        bag,
        tmp_path / "s.zarr",
        camera_topic="/cam",
        action_topic="/cmd",
        size=None,
        gap_s=1.0,
        progress=False,
    )
    store = TrajectoryStore(tmp_path / "s.zarr")
    assert store.episode_lengths().tolist() == [4, 3]
    assert summary["alignment"]["splits_on_gap"] == 1 and summary["alignment"]["splits_on_staleness"] == 0
    # zero-order hold: frame at 1.6 holds the command sent at 1.6 (same instant counts as in force)
    assert store.episode(1)["action"][0, 0] == pytest.approx(1.6, abs=1e-6)


def test_rate_resamples_a_30hz_camera_to_10hz_and_size_resizes(tmp_path):
    msgs = [("/cmd", TWIST, T0, twist(1.0))] + [
        ("/cmd", TWIST, T0 + t, twist(1.0)) for t in np.arange(0.2, 3, 0.2)
    ]
    msgs += [
        ("/cam", IMG, T0 + i / 30, image_msg(frame(i, 12, 16), "rgb8", t=T0 + i / 30)) for i in range(60)
    ]
    bag = write_bag(tmp_path / "bag", "mcap", msgs)
    summary = import_rosbag(
        bag, tmp_path / "s.zarr", camera_topic="/cam", action_topic="/cmd", rate=10.0, size=4, progress=False
    )
    store = TrajectoryStore(tmp_path / "s.zarr")
    assert store.image_shape == (4, 4, 3)
    assert store.episode(0)["frames"][:, 0, 0, 0].tolist() == list(range(0, 60, 3))  # red = index
    assert summary["alignment"]["dropped_by_rate"] == 40
    assert store.fps == pytest.approx(10.0, rel=1e-3) and summary["warnings"] == []


def test_compressed_png_and_float32_multi_array(tmp_path):
    msgs = [("/act", F32, T0 + t, f32_array([t, -t])) for t in np.arange(0, 2, 0.1)]
    msgs += [
        ("/cam/compressed", CIMG, T0 + 0.05 + i * 0.1, compressed_msg(frame(i), "rgb8; png compressed bgr8"))
        for i in range(10)
    ]
    bag = write_bag(tmp_path / "bag", "mcap", msgs)
    import_rosbag(
        bag,
        tmp_path / "s.zarr",
        camera_topic="/cam/compressed",
        action_topic="/act",
        size=None,
        progress=False,
    )
    ep = TrajectoryStore(tmp_path / "s.zarr").episode(0)
    np.testing.assert_array_equal(ep["frames"][7], frame(7))  # PNG is lossless
    np.testing.assert_allclose(
        ep["action"][:, 0], np.arange(10) * 0.1, atol=1e-6
    )  # cmd at i*0.1 <= frame time
    assert TrajectoryStore(tmp_path / "s.zarr").attrs["action_names"] == ["a0", "a1"]


def test_jpeg_compressed_frames_are_rgb(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 220
    msgs = [("/cmd", TWIST, T0, twist(0.5))]
    msgs += [
        ("/cam", CIMG, T0 + 0.1 * i, compressed_msg(red, "bgr8; jpeg compressed bgr8", quality=95))
        for i in range(1, 4)
    ]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    import_rosbag(
        bag, tmp_path / "s.zarr", camera_topic="/cam", action_topic="/cmd", size=None, progress=False
    )
    mean = TrajectoryStore(tmp_path / "s.zarr").episode(0)["frames"].reshape(-1, 3).mean(0)
    assert mean[0] > 200 and mean[1] < 20 and mean[2] < 20  # stays red, not swapped to blue


def test_joint_state_with_header_stamps(tmp_path):
    # log times lag the header stamps by 0.3 s (a slow recorder); alignment must follow the stamps
    names = ["elbow", "shoulder"]
    msgs = [
        ("/joints", JS, T0 + t + 0.3, joint_state(names, position=[t, 10 * t], velocity=[1, 2], t=T0 + t))
        for t in np.arange(0, 1, 0.1)
    ]
    msgs += [
        ("/cam", IMG, T0 + 0.05 + 0.1 * i + 0.3, image_msg(frame(i), "rgb8", t=T0 + 0.05 + 0.1 * i))
        for i in range(9)
    ]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    import_rosbag(
        bag,
        tmp_path / "s.zarr",
        camera_topic="/cam",
        action_topic="/joints",
        joint_names=["shoulder"],
        joint_field="position",
        use_header_stamps=True,
        size=None,
        progress=False,
    )
    store = TrajectoryStore(tmp_path / "s.zarr")
    ep = store.episode(0)
    np.testing.assert_allclose(ep["action"][:, 0], 10 * np.arange(9) * 0.1, atol=1e-5)
    np.testing.assert_allclose(ep["timestamp"], T0 + 0.05 + np.arange(9) * 0.1, atol=1e-6)
    assert store.attrs["action_names"] == ["shoulder.position"]


def test_header_stamp_is_read_without_deserializing():
    from _ros_msgs import typestore

    raw = typestore().serialize_cdr(image_msg(frame(1), t=T0 + 0.25), IMG)
    assert header_stamp_from_cdr(raw) == pytest.approx(T0 + 0.25, abs=1e-6)


# -- errors ----------------------------------------------------------------------------------------


@pytest.fixture
def small_bag(tmp_path):
    msgs = [("/cmd", TWIST, T0 + 0.1 * i, twist(i)) for i in range(5)]
    msgs += [("/cam", IMG, T0 + 0.05 + 0.1 * i, image_msg(frame(i), t=T0)) for i in range(5)]
    msgs += [("/depth", IMG, T0 + 0.05, _mono16())]
    return write_bag(tmp_path / "bag", "mcap", msgs)


def _mono16():
    msg = image_msg(frame(0), "mono8")
    msg.encoding, msg.step = "mono16", 16
    msg.data = np.zeros(6 * 16, np.uint8)
    return msg


def test_missing_topic_lists_the_bags_topics(small_bag, tmp_path):
    with pytest.raises(RosbagImportError) as err:
        import_rosbag(
            small_bag, tmp_path / "s.zarr", camera_topic="/camera", action_topic="/cmd", progress=False
        )
    assert str(err.value) == (
        f"camera_topic /camera is not in {small_bag}; the bag has: /cam (sensor_msgs/msg/Image), "
        "/cmd (geometry_msgs/msg/Twist), /depth (sensor_msgs/msg/Image)"
    )
    assert not (tmp_path / "s.zarr").exists()


def test_unsupported_encoding_names_it(small_bag, tmp_path):
    with pytest.raises(
        RosbagImportError,
        match=r"/depth message 0 \(t=.*\): unsupported image encoding 'mono16'; "
        r"supported: rgb8, bgr8, rgba8, bgra8, mono8",
    ):
        import_rosbag(
            small_bag, tmp_path / "s.zarr", camera_topic="/depth", action_topic="/cmd", progress=False
        )


def test_wrong_message_types_are_errors(small_bag, tmp_path):
    with pytest.raises(
        RosbagImportError, match="camera_topic /cmd carries geometry_msgs/msg/Twist; supported: "
    ):
        import_rosbag(
            small_bag, tmp_path / "s.zarr", camera_topic="/cmd", action_topic="/cmd", progress=False
        )
    with pytest.raises(
        RosbagImportError, match="action_topic /cam: unsupported command message type sensor_msgs/msg/Image"
    ):
        import_rosbag(
            small_bag, tmp_path / "s.zarr", camera_topic="/cam", action_topic="/cam", progress=False
        )
    with pytest.raises(
        RosbagImportError, match="action_type is joint_state but /cmd carries geometry_msgs/msg/Twist"
    ):
        import_rosbag(
            small_bag,
            tmp_path / "s.zarr",
            camera_topic="/cam",
            action_topic="/cmd",
            action_type="joint_state",
            progress=False,
        )
    with pytest.raises(
        RosbagImportError,
        match="use_header_stamps needs stamped messages but /cmd carries geometry_msgs/msg/Twist",
    ):
        import_rosbag(
            small_bag,
            tmp_path / "s.zarr",
            camera_topic="/cam",
            action_topic="/cmd",
            use_header_stamps=True,
            progress=False,
        )


def test_existing_output_and_empty_result_are_errors(small_bag, tmp_path):
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(RosbagImportError, match="taken.zarr already exists; pass overwrite=true"):
        import_rosbag(
            small_bag, tmp_path / "taken.zarr", camera_topic="/cam", action_topic="/cmd", progress=False
        )
    with pytest.raises(
        RosbagImportError,
        match="no episode of at least 2 frames survived alignment .*: frames total 5, dropped stale 5",
    ):
        import_rosbag(
            small_bag,
            tmp_path / "s.zarr",
            camera_topic="/cam",
            action_topic="/cmd",
            max_staleness_s=0.01,
            progress=False,
        )
    assert not (tmp_path / "s.zarr").exists()


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_imports_and_prints_one_json_line(small_bag, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    code = main(
        [
            "data",
            "import-rosbag",
            str(small_bag),
            f"out={out}",
            "camera_topic=/cam",
            "action_topic=/cmd",
            "size=4",
            "progress=false",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert (summary["episodes"], summary["frames"], summary["image_shape"]) == (1, 5, [4, 4, 3])


def test_cli_reports_user_errors_in_one_line(small_bag, tmp_path, capsys):
    code = main(
        [
            "data",
            "import-rosbag",
            str(small_bag),
            f"out={tmp_path / 'x.zarr'}",
            "camera_topic=/nope",
            "action_topic=/cmd",
            "progress=false",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crcm: error: camera_topic /nope is not in ") and "\n" not in err


def test_function_defaults_match_the_config_dataclass():
    sig = inspect.signature(import_rosbag)
    cfg = RosbagImportConfig()
    for name, param in sig.parameters.items():
        if param.default is inspect.Parameter.empty or name == "progress":
            continue
        default = param.default
        assert (
            tuple(default) == tuple(getattr(cfg, name))
            if isinstance(default, tuple)
            else default == getattr(cfg, name)
        ), name
