"""r2s-segment's readers on files written by other libraries (plyfile, pypcd4, laspy, numpy,
rosbags), and on broken files: each must name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pytest
from plyfile import PlyData, PlyElement
from pypcd4 import Encoding, PointCloud
from rosbags.rosbag2 import Writer

from r2s_ros.bags import contract
from r2s_ros.bags.make_bag import BagSettings, make_bag
from r2s_ros.segment.bag_input import bag_folder, read_bag_cloud
from r2s_ros.segment.readers import CloudFileError, read_cloud_file
from tests.segment.conftest import Scan

STEP = 0.001  # LAS stores integers of this many metres


def assert_same(read: np.ndarray, written: np.ndarray, tolerance: float = 1e-6) -> None:
    np.testing.assert_allclose(read, written, atol=tolerance, rtol=0)


def ply_vertices(
    scan: Scan, colour_names: tuple[str, str, str] | None, floats: bool = False
) -> np.ndarray:
    """xyz float32 and colour channels uint8 (or float32 in [0, 1])."""
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    fields += [(name, "f4" if floats else "u1") for name in colour_names or ()]
    vertex = np.empty(len(scan.points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = scan.points[:, i]
    for i, name in enumerate(colour_names or ()):
        vertex[name] = scan.colors[:, i] / 255.0 if floats else scan.colors[:, i]
    return vertex


@pytest.mark.parametrize("text", [False, True], ids=["binary", "ascii"])
def test_ply_written_by_plyfile(small_scan: Scan, tmp_path: Path, text: bool) -> None:
    path = tmp_path / "scan.ply"
    vertex = ply_vertices(small_scan, ("red", "green", "blue"))
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))
    cloud = read_cloud_file(path)
    assert cloud.format == "PLY" and cloud.notes == ()
    assert_same(cloud.points, small_scan.points.astype(np.float32))
    np.testing.assert_array_equal(cloud.colors, small_scan.colors)


def test_ply_mesh_with_float_colours_and_no_colour(small_scan: Scan, tmp_path: Path) -> None:
    vertex = ply_vertices(small_scan, None)
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(faces, "face")]).write(
        str(path)
    )
    cloud = read_cloud_file(path)
    assert cloud.colors is None
    assert "its 1 faces are ignored" in cloud.notes[0]

    floats = ply_vertices(small_scan, ("r", "g", "b"), floats=True)
    PlyData([PlyElement.describe(floats, "vertex")]).write(str(path))
    np.testing.assert_array_equal(read_cloud_file(path).colors, small_scan.colors)


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_pcd_written_by_pypcd4(small_scan: Scan, tmp_path: Path, encoding: Encoding) -> None:
    points = small_scan.points.astype(np.float32)
    if encoding == Encoding.ASCII:  # pypcd4 writes a packed rgb as 0.0 in ASCII: r, g, b
        columns = [*points.T, *small_scan.colors.T]
        cloud = PointCloud.from_points(
            columns, ["x", "y", "z", "r", "g", "b"], [np.float32] * 3 + [np.uint8] * 3
        )
    else:
        rgb = PointCloud.encode_rgb(small_scan.colors)
        cloud = PointCloud.from_xyzrgb_points(np.column_stack([points, rgb]))
    path = tmp_path / "scan.pcd"
    cloud.save(path, encoding=encoding)
    read = read_cloud_file(path)
    assert read.format == "PCD"
    assert_same(read.points, points, 1e-5)
    np.testing.assert_array_equal(read.colors, small_scan.colors)


def test_pcd_ascii_as_pcl_writes_it(tmp_path: Path) -> None:
    """PCL writes a float rgb field of an ASCII PCD as the integer 0xAARRGGBB (alpha 255);
    organized clouds hold NaN points, which are dropped."""
    colours = [(255, 0, 0), (0, 255, 1), (1, 2, 255)]
    rows = [
        f"{i * 0.5} 1 2 {(255 << 24) | (r << 16) | (g << 8) | b}"
        for i, (r, g, b) in enumerate(colours)
    ]
    header = [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS x y z rgb",
        "SIZE 4 4 4 4",
        "TYPE F F F F",
        "COUNT 1 1 1 1",
        "WIDTH 2",
        "HEIGHT 2",
        "VIEWPOINT 0 0 0 1 0 0 0",
        "POINTS 4",
        "DATA ascii",
    ]
    path = tmp_path / "pcl.pcd"
    path.write_text("\n".join([*header, *rows, "nan nan nan 0"]) + "\n")
    cloud = read_cloud_file(path)
    np.testing.assert_array_equal(cloud.colors, np.array(colours, np.uint8))
    assert_same(cloud.points[:, 0], [0.0, 0.5, 1.0])
    assert cloud.notes == ("1 of 4 points with NaN/inf coordinates dropped",)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_and_laz_written_by_laspy(small_scan: Scan, tmp_path: Path, suffix: str) -> None:
    las = laspy.create(point_format=3, file_version="1.2")
    las.header.scales = [STEP] * 3
    las.header.offsets = [500_000.0, 4_000_000.0, 0.0]  # georeferenced, as surveys are
    points = small_scan.points + las.header.offsets
    las.x, las.y, las.z = points.T
    las.red, las.green, las.blue = small_scan.colors.astype(np.uint16).T * 257  # 16-bit colour
    path = tmp_path / f"scan{suffix}"
    las.write(path)
    cloud = read_cloud_file(path)
    assert cloud.format == suffix[1:].upper()
    assert_same(cloud.points, points, STEP)
    np.testing.assert_array_equal(cloud.colors, small_scan.colors)


def test_npy_and_npz_written_by_numpy(small_scan: Scan, tmp_path: Path) -> None:
    xyz, rgb = small_scan.points, small_scan.colors
    np.save(tmp_path / "xyz.npy", xyz.astype(np.float32))
    assert read_cloud_file(tmp_path / "xyz.npy").colors is None
    np.save(tmp_path / "xyzrgb.npy", np.column_stack([xyz, rgb / 255.0]))
    cloud = read_cloud_file(tmp_path / "xyzrgb.npy")
    assert_same(cloud.points, xyz)
    np.testing.assert_array_equal(cloud.colors, rgb)
    np.save(tmp_path / "wide.npy", np.column_stack([xyz, rgb, np.zeros(len(xyz))]))
    assert "columns: 0-2 read as xyz, 3-5 as RGB" in read_cloud_file(tmp_path / "wide.npy").notes[0]

    np.savez_compressed(
        tmp_path / "scene.npz", points=xyz.astype(np.float32), colors=rgb, other=rgb
    )
    cloud = read_cloud_file(tmp_path / "scene.npz")
    np.testing.assert_array_equal(cloud.colors, rgb)
    structured = np.rec.fromarrays([*xyz.T, *rgb.T], names="x,y,z,red,green,blue")
    np.savez(tmp_path / "single.npz", structured)
    np.testing.assert_array_equal(read_cloud_file(tmp_path / "single.npz").colors, rgb)


def test_a_scan_bag_is_accumulated_through_its_odometry(tmp_path: Path) -> None:
    settings = BagSettings(seed=3, frames=3, instructions=0, points_per_m2=300.0)
    bag = make_bag(tmp_path / "scan", settings, progress=False).path
    storage = next(bag.glob("*.mcap"))
    assert bag_folder(storage) == bag_folder(bag) == bag
    cloud = read_bag_cloud(bag)
    assert cloud.format == "rosbag2 /points" and cloud.colors is not None
    assert "3 of 3 clouds on /points in frame 'map' placed by /odom" in cloud.notes[0]
    truth = np.load(bag / contract.SCENE_FILE)["points"]
    # Every accumulated voxel lies on the room: its poses placed the sensor-frame clouds.
    low, high = truth.min(axis=0) - 0.1, truth.max(axis=0) + 0.1
    assert ((cloud.points >= low) & (cloud.points <= high)).all()


def write_rosbags_bag(
    path: Path, clouds: list[tuple[str, np.ndarray]], *, tf_first: bool = False
) -> None:
    """A bag as a robot's recorder writes it, with rosbags: xyz float32 + packed rgb PointCloud2
    clouds on /camera/points, no odometry; `tf_first`: a /tf message (map -> camera, identity)
    recorded before the first cloud."""
    store = contract.typestore()
    PointCloud2 = store.types["sensor_msgs/msg/PointCloud2"]
    PointField = store.types["sensor_msgs/msg/PointField"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    fields = [
        PointField(name=n, offset=4 * i, datatype=7, count=1)
        for i, n in enumerate(["x", "y", "z", "rgb"])
    ]
    with Writer(path, version=9) as writer:
        if tf_first:
            write_identity_tf(writer, store)
        connection = writer.add_connection(
            "/camera/points", PointCloud2.__msgtype__, typestore=store
        )
        for index, (frame, points) in enumerate(clouds):
            data = np.zeros(len(points), dtype=[("xyz", "<f4", 3), ("rgb", "<u4")])
            data["xyz"], data["rgb"] = points, 0x00FF8000  # orange
            message = PointCloud2(
                header=Header(stamp=Time(sec=index, nanosec=0), frame_id=frame),
                height=1,
                width=len(points),
                fields=fields,
                is_bigendian=False,
                point_step=16,
                row_step=16 * len(points),
                data=data.view(np.uint8),
                is_dense=True,
            )
            writer.write(
                connection, index * 10**9, store.serialize_cdr(message, message.__msgtype__)
            )


def write_identity_tf(writer: Writer, store) -> None:
    names = "tf2_msgs/msg/TFMessage", "geometry_msgs/msg/TransformStamped"
    TFMessage, TransformStamped = (store.types[name] for name in names)
    Transform, Vector3, Quaternion = (
        store.types[f"geometry_msgs/msg/{name}"] for name in ("Transform", "Vector3", "Quaternion")
    )
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    transform = TransformStamped(
        header=Header(stamp=Time(sec=0, nanosec=0), frame_id="map"),
        child_frame_id="camera",
        transform=Transform(
            translation=Vector3(x=0.0, y=0.0, z=0.0),
            rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        ),
    )
    message = TFMessage(transforms=[transform])
    connection = writer.add_connection("/tf", TFMessage.__msgtype__, typestore=store)
    writer.write(connection, 0, store.serialize_cdr(message, message.__msgtype__))


@pytest.mark.parametrize("tf_first", [False, True])
def test_a_bag_without_odometry_takes_the_first_cloud_frame(
    small_scan: Scan, tmp_path: Path, tf_first: bool
) -> None:
    half = len(small_scan.points) // 2
    clouds = [
        ("camera", small_scan.points[:half]),
        ("camera", small_scan.points[half:]),
        ("elsewhere", small_scan.points[:10]),
    ]
    write_rosbags_bag(tmp_path / "robot", clouds, tf_first=tf_first)
    cloud = read_bag_cloud(tmp_path / "robot", topic="/camera/points")
    assert "2 of 3 clouds on /camera/points in frame 'camera'" in cloud.notes[0]
    assert "(dropped: wrong_frame 1)" in cloud.notes[0]
    assert (cloud.colors == [255, 128, 0]).all()
    assert 0.9 * len(small_scan.points) < len(cloud.points) <= len(small_scan.points)  # 2 cm voxels


def test_bad_bags_name_the_bag_and_the_problem(small_scan: Scan, tmp_path: Path) -> None:
    write_rosbags_bag(tmp_path / "robot", [("camera", small_scan.points)])
    with pytest.raises(
        CloudFileError, match=r"robot: no topic /points .*available: /camera/points"
    ):
        read_bag_cloud(tmp_path / "robot")
    with pytest.raises(
        CloudFileError, match=r"empty is not a rosbag2 folder: it has no metadata.yaml"
    ):
        (tmp_path / "empty").mkdir()
        read_bag_cloud(tmp_path / "empty")
    with pytest.raises(CloudFileError, match=r"the odometry must be nav_msgs/msg/Odometry"):
        read_bag_cloud(tmp_path / "robot", "/camera/points", odometry_topic="/camera/points")
    write_rosbags_bag(tmp_path / "hollow", [("camera", np.zeros((0, 3)))])
    # An empty cloud is not accepted by the intake: it is a drop with its own reason.
    with pytest.raises(
        CloudFileError, match=r"hollow: no point reached the scene: 0 of 1 clouds.*empty_cloud 1"
    ):
        read_bag_cloud(tmp_path / "hollow", "/camera/points")


def broken_files(tmp_path: Path, scan: Scan) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say)."""
    vertex = ply_vertices(scan, ("red", "green", "blue"))
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "good.ply"))
    good_ply = (tmp_path / "good.ply").read_bytes()
    PointCloud.from_xyz_points(scan.points.astype(np.float32)).save(tmp_path / "good.pcd")
    good_pcd = (tmp_path / "good.pcd").read_bytes()
    files = {
        "truncated.ply": (
            good_ply[:-100],
            r"not a readable PLY file \(PlyElementParseError: .*end-of-file",
        ),
        "garbage.ply": (b"hello\n", r"not a readable PLY file \(PlyHeaderParseError"),
        "faces.ply": (
            b"ply\nformat ascii 1.0\nelement face 0\n"
            b"property list uchar int vertex_indices\nend_header\n",
            r"PLY without a 'vertex' element \(elements: face\)",
        ),
        "noz.ply": (
            b"ply\nformat ascii 1.0\nelement vertex 1\n"
            b"property float x\nproperty float y\nend_header\n1 2\n",
            r"no z field \(fields: x, y\)",
        ),
        "truncated.pcd": (
            good_pcd[:-120],
            r"truncated PCD: the header promises 1500 points, the data holds 1490",
        ),
        "garbage.pcd": (b"\x00\x01binary junk", r"not a readable PCD file"),
        "garbage.laz": (b"LASF" + bytes(300), r"not a readable LAZ file"),
        "pickled.npy": (None, r"not a readable NPY file \(ValueError: .*allow_pickle"),
        "flat.npy": (None, r"array of shape \(10,\); expected \(N, 3\) xyz"),
        "keys.npz": (None, r"no points array \(looked for points, .*found a, b\)"),
        "colours.npy": (None, r"colour values span \[0, 70000\]"),
        "scan.xyz": (b"1 2 3\n", r"unknown point cloud format '.xyz' \(known: .las, .laz"),
    }
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "flat.npy", np.zeros(10))
    np.savez(tmp_path / "keys.npz", a=np.zeros((3, 3)), b=np.zeros(3))
    np.save(
        tmp_path / "colours.npy", np.column_stack([scan.points[:2], [[0, 0, 0], [70000, 0, 0]]])
    )
    for name, (content, _) in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    return {name: (tmp_path / name, message) for name, (_, message) in files.items()}


def test_broken_files_name_the_file_and_the_problem(small_scan: Scan, tmp_path: Path) -> None:
    for name, (path, message) in broken_files(tmp_path, small_scan).items():
        with pytest.raises(CloudFileError, match=message) as caught:
            read_cloud_file(path)
        assert str(caught.value).startswith(f"{path}: "), name
    with pytest.raises(CloudFileError, match=r"missing.ply: no such file"):
        read_cloud_file(tmp_path / "missing.ply")
