"""PointCloud2 codec against clouds written byte by byte from the sensor_msgs message spec."""

import math
import struct

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from r2s_ros.pointcloud import CloudError, decode_cloud, encode_cloud

F32, F64, U8, U32 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT8, PointField.UINT32
# Fills the bytes that no field covers, so that reading them gives visibly wrong values.
FILLER = b"\xee"
XYZ = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32)]


def field(name: str, offset: int, datatype: int, count: int = 1) -> PointField:
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def point(size: int, *values: tuple[int, str, float]) -> bytes:
    """One point record of `size` bytes: each (offset, struct format, value) packed in place."""
    record = bytearray(FILLER * size)
    for offset, fmt, value in values:
        struct.pack_into(fmt, record, offset, value)
    return bytes(record)


def xyz(x: float, y: float, z: float, order: str = "<") -> list[tuple[int, str, float]]:
    return [(0, order + "f", x), (4, order + "f", y), (8, order + "f", z)]


def cloud(
    fields: list[tuple[str, int, int] | PointField],
    points: list[bytes],
    *,
    height: int = 1,
    row_padding: int = 0,
    big_endian: bool = False,
) -> PointCloud2:
    """A cloud of equally sized point records, in rows of len(points) / height."""
    point_step = len(points[0])
    width = len(points) // height
    row_step = width * point_step + row_padding
    rows = [
        b"".join(points[r * width : (r + 1) * width]) + FILLER * row_padding for r in range(height)
    ]
    return PointCloud2(
        header=Header(frame_id="sensor"),
        height=height,
        width=width,
        fields=[f if isinstance(f, PointField) else field(*f) for f in fields],
        is_bigendian=big_endian,
        point_step=point_step,
        row_step=row_step,
        data=b"".join(rows),
        is_dense=False,
    )


def test_xyz_with_packed_float_rgb_and_padding() -> None:
    def rgb_as_float(word: int) -> float:
        return struct.unpack("<f", struct.pack("<I", word))[0]

    msg = cloud(
        [*XYZ, ("rgb", 16, F32)],
        [
            point(32, *xyz(1.5, -2.0, 3.25), (16, "<f", rgb_as_float(0x00FF8001))),
            point(32, *xyz(0.0, 1e-3, -7.0), (16, "<f", rgb_as_float(0x000A141E))),
        ],
    )
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(
        decoded.points, np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], np.float32)
    )
    np.testing.assert_array_equal(decoded.colors, [[0xFF, 0x80, 0x01], [10, 20, 30]])
    assert decoded.points.dtype == np.float32 and decoded.points.flags.c_contiguous
    assert decoded.colors.dtype == np.uint8 and decoded.colors.flags.c_contiguous
    assert decoded.intensity is None
    assert (decoded.num_input, decoded.num_nonfinite) == (2, 0)


def test_packed_uint32_rgba_ignores_alpha() -> None:
    msg = cloud(
        [("rgba", 0, U32), ("x", 4, F32), ("y", 8, F32), ("z", 12, F32)],
        [point(16, (0, "<I", 0xFF112233), (4, "<f", 1.0), (8, "<f", 2.0), (12, "<f", 3.0))],
    )
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(decoded.points, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(decoded.colors, [[0x11, 0x22, 0x33]])


def test_separate_uint8_channels_and_uint16_intensity() -> None:
    fields = [*XYZ, ("r", 12, U8), ("g", 13, U8), ("b", 14, U8), ("intensity", 16, 4)]
    values = [(1.0, 2.0, 3.0, 200, 100, 50, 65535), (4.0, 5.0, 6.0, 0, 255, 7, 12)]
    msg = cloud(
        fields,
        [
            point(20, *xyz(x, y, z), (12, "B", r), (13, "B", g), (14, "B", b), (16, "<H", i))
            for x, y, z, r, g, b, i in values
        ],
    )
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(decoded.points, [v[:3] for v in values])
    np.testing.assert_array_equal(decoded.colors, [v[3:6] for v in values])
    np.testing.assert_array_equal(decoded.intensity, np.array([65535, 12], np.float32))
    assert decoded.intensity.dtype == np.float32


def test_float_channels_in_unit_range_become_bytes() -> None:
    fields = [*XYZ, ("r", 12, F32), ("g", 16, F32), ("b", 20, F32)]
    channels = [(0.0, 1.0, 0.2), (1.5, -0.1, math.nan)]
    msg = cloud(
        fields,
        [
            point(24, *xyz(0, 0, 0), (12, "<f", r), (16, "<f", g), (20, "<f", b))
            for r, g, b in channels
        ],
    )
    np.testing.assert_array_equal(decode_cloud(msg).colors, [[0, 255, 51], [255, 0, 0]])


@pytest.mark.parametrize(
    ("datatype", "fmt", "value"),
    [
        (PointField.INT8, "b", -7),
        (PointField.UINT8, "B", 250),
        (PointField.INT16, "<h", -30000),
        (PointField.UINT16, "<H", 60000),
        (PointField.INT32, "<i", -123456),
        (PointField.UINT32, "<I", 4_000_000),
        (PointField.FLOAT32, "<f", 0.375),
        (PointField.FLOAT64, "<d", -1.25),
    ],
)
def test_intensity_of_every_datatype(datatype: int, fmt: str, value: float) -> None:
    msg = cloud([*XYZ, ("intensity", 16, datatype)], [point(24, *xyz(1, 2, 3), (16, fmt, value))])
    decoded = decode_cloud(msg)
    assert decoded.intensity.tolist() == [value]
    assert decoded.colors is None


def test_unknown_fields_including_multi_element_ones_are_skipped() -> None:
    fields = [
        ("ring", 0, PointField.UINT16),
        field("normal", 4, F32, count=3),
        ("x", 16, F32),
        ("y", 20, F32),
        ("z", 24, F32),
        ("t", 28, PointField.UINT32),
    ]
    msg = cloud(
        fields,
        [point(40, (0, "<H", 3), (16, "<f", 9.0), (20, "<f", 8.0), (24, "<f", 7.0), (28, "<I", 5))],
    )
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(decoded.points, [[9.0, 8.0, 7.0]])
    assert decoded.colors is None and decoded.intensity is None


def test_big_endian() -> None:
    fields = [*XYZ, ("rgb", 12, U32), ("intensity", 16, F32)]
    msg = cloud(
        fields,
        [point(20, *xyz(1.5, -2.5, 1e6, ">"), (12, ">I", 0x00A0B0C0), (16, ">f", 0.75))],
        big_endian=True,
    )
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(decoded.points, [[1.5, -2.5, 1e6]])
    np.testing.assert_array_equal(decoded.colors, [[0xA0, 0xB0, 0xC0]])
    np.testing.assert_array_equal(decoded.intensity, [0.75])


def test_float64_xyz_is_narrowed_to_float32() -> None:
    fields = [("x", 0, F64), ("y", 8, F64), ("z", 16, F64)]
    values = [(0.1, -123456.789, 1e-3), (1e300, 0.0, 0.0)]
    msg = cloud(
        fields, [point(24, (0, "<d", x), (8, "<d", y), (16, "<d", z)) for x, y, z in values]
    )
    decoded = decode_cloud(msg)
    # The second point is beyond float32 range: it becomes inf and is dropped like NaN.
    np.testing.assert_array_equal(decoded.points, np.array(values[:1], np.float32))
    assert decoded.num_nonfinite == 1


def test_organized_cloud_with_nan_points_and_row_padding() -> None:
    nan, inf = math.nan, math.inf
    grid = [  # 3 rows x 4 columns of (x, y, z, packed rgb)
        [(0, 0, 1, 1), (nan, nan, nan, 2), (2, 0, 1, 3), (3, 0, 1, 4)],
        [(nan, nan, nan, 5)] * 4,
        [(0, 2, inf, 9), (1, 2, 1, 10), (2, nan, 1, 11), (3, 2, -1, 12)],
    ]
    fields = [*XYZ, ("rgb", 12, U32)]
    points = [point(16, *xyz(x, y, z), (12, "<I", c)) for row in grid for x, y, z, c in row]
    msg = cloud(fields, points, height=3, row_padding=12)
    assert msg.row_step == 4 * 16 + 12
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(
        decoded.points, [[0, 0, 1], [2, 0, 1], [3, 0, 1], [1, 2, 1], [3, 2, -1]]
    )
    np.testing.assert_array_equal(decoded.colors[:, 2], [1, 3, 4, 10, 12])
    assert (decoded.num_input, decoded.num_nonfinite) == (12, 7)
    assert decoded.points.flags.c_contiguous and decoded.colors.flags.c_contiguous


def test_empty_cloud() -> None:
    msg = PointCloud2(
        height=1, width=0, fields=[field(*f) for f in XYZ], point_step=12, row_step=0, data=b""
    )
    decoded = decode_cloud(msg)
    assert decoded.points.shape == (0, 3) and decoded.num_input == 0


def test_round_trip_through_serialization() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1000, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    header = Header(frame_id="map")
    header.stamp.sec = 12
    msg = deserialize_message(serialize_message(encode_cloud(points, colors, header)), PointCloud2)
    decoded = decode_cloud(msg)
    np.testing.assert_array_equal(decoded.points, points)
    np.testing.assert_array_equal(decoded.colors, colors)
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("map", 12)


def test_encoded_layout_follows_the_rviz_convention() -> None:
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.0]], np.float64)
    colors = np.array([[255, 128, 1], [10, 20, 30]], np.uint8)
    msg = encode_cloud(points, colors, Header())
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert fields == [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("rgb", 12, F32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 16, 32)
    assert not msg.is_bigendian and msg.is_dense
    records = list(struct.iter_unpack("<fffI", bytes(msg.data)))
    assert records == [(1.0, 2.0, 3.0, 0x00FF8001), (-4.0, 0.5, 6.0, 0x000A141E)]


def test_encode_without_colors_and_with_nan() -> None:
    points = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]], np.float32)
    msg = encode_cloud(points, None, Header())
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 12
    assert not msg.is_dense
    decoded = decode_cloud(msg)
    assert decoded.colors is None and decoded.num_nonfinite == 1
    np.testing.assert_array_equal(decoded.points, [[1.0, 2.0, 3.0]])


def test_is_dense_reflects_the_written_float32_values() -> None:
    white = np.full((2, 3), 255, np.uint8)
    assert encode_cloud(np.zeros((2, 3)), white, Header()).is_dense
    assert not encode_cloud(np.array([[0.0, 0.0, 1e300]] * 2), white, Header()).is_dense


@pytest.mark.parametrize(
    ("points", "colors"),
    [
        (np.zeros((4, 2)), None),
        (np.zeros(3), None),
        (np.zeros((4, 3)), np.zeros((4, 3), np.float32)),
        (np.zeros((4, 3)), np.zeros((3, 3), np.uint8)),
    ],
)
def test_encode_rejects_bad_shapes(points: np.ndarray, colors: np.ndarray | None) -> None:
    with pytest.raises(ValueError, match="must"):
        encode_cloud(points, colors, Header())


def good_cloud() -> PointCloud2:
    """2 x 2 organized cloud, point_step 16, row_step 40: the base of the malformed cases."""
    points = [point(16, *xyz(i, i, i), (12, "<I", i)) for i in range(4)]
    return cloud([*XYZ, ("rgb", 12, U32)], points, height=2, row_padding=8)


def with_fields(*fields: PointField) -> PointCloud2:
    msg = good_cloud()
    msg.fields = list(fields)
    return msg


def with_attributes(**attributes: object) -> PointCloud2:
    msg = good_cloud()
    for name, value in attributes.items():
        setattr(msg, name, value)
    return msg


XYZ_FIELDS = [field(*f) for f in XYZ]
MALFORMED = {
    "data_length": with_attributes(data=bytes(2 * 40 - 1)),
    "bad_step": with_attributes(row_step=31),
    "point_step_zero": with_attributes(point_step=0),
    "field_overflow": with_fields(*XYZ_FIELDS, field("rgb", 14, U32)),
    "field_overflow_by_count": with_fields(*XYZ_FIELDS, field("extra", 12, F32, count=2)),
    "field_count": with_fields(field("x", 0, F32, count=2), *XYZ_FIELDS[1:]),
    "missing_xyz": with_fields(*XYZ_FIELDS[:2]),
    "unknown_datatype": with_fields(*XYZ_FIELDS, field("rgb", 12, 9)),
    "duplicate_field": with_fields(*XYZ_FIELDS, field("y", 12, F32)),
    "xyz_datatype": with_fields(field("x", 0, PointField.INT32), *XYZ_FIELDS[1:]),
    "color_datatype": with_fields(*XYZ_FIELDS, field("rgb", 12, PointField.UINT16)),
}
EXPECTED_REASON = {"point_step_zero": "bad_step", "field_overflow_by_count": "field_overflow"}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_cloud_is_rejected_with_its_reason(case: str) -> None:
    with pytest.raises(CloudError) as error:
        decode_cloud(MALFORMED[case])
    assert error.value.reason == EXPECTED_REASON.get(case, case)
    assert str(error.value)


def test_too_many_points() -> None:
    decode_cloud(good_cloud(), max_points=4)
    with pytest.raises(CloudError) as error:
        decode_cloud(good_cloud(), max_points=3)
    assert error.value.reason == "too_large"


def random_cloud(rng: np.random.Generator, noise: bytes) -> PointCloud2:
    """A valid cloud of random layout over random bytes, then with one random field or header
    value changed half of the time."""
    names = [
        "x",
        "y",
        "z",
        *rng.choice(["rgb", "rgba", "r", "g", "b", "intensity", "t"], 3, replace=False),
    ]
    fields, offset = [], 0
    for name in rng.permutation(names):
        datatype = int(rng.choice([F32, F64, U8, U32])) if name not in ("x", "y", "z") else F32
        fields.append(field(str(name), offset, datatype))
        offset += 8 + int(rng.integers(0, 3))
    height, width = int(rng.integers(0, 4)), int(rng.integers(0, 50))
    point_step = offset + int(rng.integers(0, 5))
    row_step = width * point_step + int(rng.integers(0, 9))
    msg = PointCloud2(
        height=height,
        width=width,
        fields=fields,
        is_bigendian=bool(rng.integers(0, 2)),
        point_step=point_step,
        row_step=row_step,
        data=noise[: height * row_step],
    )
    target = fields[int(rng.integers(0, len(fields)))]
    change = int(rng.integers(0, 16))
    value = int(rng.integers(0, 80))
    if change == 0:
        target.datatype = value % 10
    elif change == 1:
        target.count = value % 3
    elif change == 2:
        target.offset = value
    elif change == 3:
        target.name = str(rng.choice(names))
    elif change == 4:
        msg.point_step = value
    elif change == 5:
        msg.row_step = max(0, msg.row_step - value)
    elif change == 6:
        msg.data = noise[: max(0, len(msg.data) - value)]
    elif change == 7:
        msg.fields = fields[1:]
    return msg


def test_random_layouts_give_a_cloud_or_a_cloud_error() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    outcomes: dict[str, int] = {}
    for _ in range(500):
        msg = random_cloud(rng, noise)
        try:
            decoded = decode_cloud(msg)
        except CloudError as error:
            outcomes[error.reason] = outcomes.get(error.reason, 0) + 1
        else:
            outcomes["decoded"] = outcomes.get("decoded", 0) + 1
            assert decoded.points.shape == (decoded.num_input - decoded.num_nonfinite, 3)
            assert decoded.num_input == msg.height * msg.width
    assert outcomes.get("decoded", 0) >= 100 and len(outcomes) >= 6, outcomes
