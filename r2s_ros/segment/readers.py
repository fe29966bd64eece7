"""Point cloud files -> finite xyz and RGB arrays: PLY, PCD, LAS/LAZ, NPY/NPZ.

Parsing is left to maintained libraries (plyfile, pypcd4, laspy with the lazrs backend, numpy);
this module only maps their fields to points and colours. No ROS and no model import, so any
tool can reuse it. Anything unusable raises `CloudFileError` naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import laspy
import numpy as np
from plyfile import PlyData
from pypcd4 import Encoding, PointCloud

# Field names of colour channels, as writers spell them.
COLOUR_FIELDS = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)
PACKED_COLOUR_FIELDS = ("rgb", "rgba")  # PCD: 0x00RRGGBB in a float32 or uint32
NPZ_POINT_KEYS = ("points", "xyz", "coords", "coord", "positions")
NPZ_COLOUR_KEYS = ("colors", "colours", "color", "colour", "rgb")


class CloudFileError(ValueError):
    """A file that cannot be read as a point cloud; the message names the file and the problem."""


@dataclass(frozen=True)
class Cloud:
    """A point cloud as read: points (N, 3) float64 in the source's frame and units, all finite;
    colors (N, 3) uint8 or None; notes: what reading found or changed, for the user."""

    source: str
    format: str
    points: np.ndarray
    colors: np.ndarray | None
    notes: tuple[str, ...] = ()


class _Arrays(NamedTuple):
    points: np.ndarray  # (N, 3) any real dtype
    colors: np.ndarray | None  # (N, 3) any numeric dtype, converted by colour_bytes
    notes: list[str]


def read_cloud_file(path: Path) -> Cloud:
    """Reads a .ply, .pcd, .las, .laz, .npy or .npz file by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        known = ", ".join(sorted(_READERS))
        raise CloudFileError(f"{path}: unknown point cloud format {suffix!r} (known: {known})")
    if not path.is_file():
        raise CloudFileError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    name, reader = _READERS[suffix]
    try:
        arrays = reader(path)
    except CloudFileError:
        raise
    except Exception as error:  # each library raises its own types (PlyParseError, pydantic...)
        raise CloudFileError(
            f"{path}: not a readable {name} file ({type(error).__name__}: {error})"
        ) from error
    return make_cloud(str(path), name, arrays.points, arrays.colors, arrays.notes)


def make_cloud(
    source: str,
    format: str,
    points: np.ndarray,
    colors: np.ndarray | None,
    notes: list[str] | tuple[str, ...] = (),
) -> Cloud:
    """Checks shapes, converts colours to bytes and drops points with non-finite coordinates."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise CloudFileError(
            f"{source}: points must be (N, 3) numbers, got {points.shape} {points.dtype}"
        )
    if colors is not None:
        colors = colour_bytes(source, np.asarray(colors))
        if colors.shape != points.shape:
            raise CloudFileError(f"{source}: {len(colors)} colours for {len(points)} points")
    finite = np.isfinite(points).all(axis=1)
    notes = list(notes)
    if not finite.all():
        notes.append(
            f"{int((~finite).sum())} of {len(points)} points with NaN/inf coordinates dropped"
        )
        points = points[finite]
        colors = None if colors is None else colors[finite]
    return Cloud(source, format, points.astype(np.float64), colors, tuple(notes))


def colour_bytes(source: str, values: np.ndarray) -> np.ndarray:
    """(N, 3) colours as uint8: 8-bit kept, 16-bit (LAS) and floats in [0, 1] scaled to 0-255."""
    if values.dtype == np.uint8:
        return values
    if len(values) == 0:
        return values.astype(np.uint8)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if low < 0 or not np.isfinite(high) or high > 65535:
        raise CloudFileError(
            f"{source}: colour values span [{low:g}, {high:g}]; expected 0-255, 0-65535 or 0-1"
        )
    if np.issubdtype(values.dtype, np.floating) and high <= 1.0:
        values = values * 255.0
    elif high > 255:
        values = values / 257.0  # 16-bit channels: 65535 -> 255
    return np.rint(values).astype(np.uint8)


def _fields(source: str, data: np.ndarray) -> _Arrays:
    """xyz and colour channels of a structured array (a PLY element, PCD data, a .npy)."""
    names = data.dtype.names or ()
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise CloudFileError(
            f"{source}: no {'/'.join(missing)} field (fields: {', '.join(names) or 'none'})"
        )
    points = np.column_stack([data[axis] for axis in "xyz"])
    triple = next((t for t in COLOUR_FIELDS if set(t) <= set(names)), None)
    colors = None if triple is None else np.column_stack([data[channel] for channel in triple])
    return _Arrays(points, colors, [])


def _read_ply(path: Path) -> _Arrays:
    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        names = ", ".join(element.name for element in ply.elements) or "none"
        raise CloudFileError(f"{path}: PLY without a 'vertex' element (elements: {names})")
    arrays = _fields(str(path), ply["vertex"].data)
    if "face" in ply and ply["face"].count:
        arrays.notes.append(
            f"a mesh: its {ply['face'].count} faces are ignored, only its "
            f"{len(arrays.points)} vertices are used"
        )
    return arrays


def _read_pcd(path: Path) -> _Arrays:
    cloud = PointCloud.from_path(path)
    expected, found = cloud.metadata.points, len(cloud.pc_data)
    if found != expected:
        raise CloudFileError(
            f"{path}: truncated PCD: the header promises {expected} points, the data holds {found}"
        )
    arrays = _fields(str(path), cloud.pc_data)
    packed = next((name for name in PACKED_COLOUR_FIELDS if name in cloud.fields), None)
    if arrays.colors is not None or packed is None:
        return arrays
    bits = np.ascontiguousarray(cloud.pc_data[packed])
    if cloud.metadata.data == Encoding.ASCII and bits.dtype.kind == "f":
        bits = _ascii_colour_bits(path, cloud, packed)
    return arrays._replace(colors=PointCloud.decode_rgb(bits))


def _ascii_colour_bits(path: Path, cloud: PointCloud, name: str) -> np.ndarray:
    """(N,) uint32 of a float `rgb` field in an ASCII PCD. PCL writes it as the integer of its
    bits (0xAARRGGBB, alpha usually 255), which pypcd4's float32 column cannot hold exactly; the
    column is read again as float64. Values that are not integers are float bit patterns."""
    column = sum(cloud.counts[: cloud.fields.index(name)])
    with path.open("rb") as file:
        header_lines = next(i for i, line in enumerate(file) if line.startswith(b"DATA")) + 1
    values = np.loadtxt(path, skiprows=header_lines, usecols=column, ndmin=1)
    if np.array_equal(values, np.round(values)) and values.min(initial=0) >= 0:
        return values.astype(np.uint32)
    return values.astype(np.float32).view(np.uint32)


def _read_las(path: Path) -> _Arrays:
    las = laspy.read(path)
    points = np.column_stack([las.x, las.y, las.z])  # scaled and offset, float64
    colors = None
    if {"red", "green", "blue"} <= set(las.point_format.dimension_names):
        colors = np.column_stack([las.red, las.green, las.blue])
    return _Arrays(points, colors, [])


def _read_npy(path: Path) -> _Arrays:
    return _array(str(path), np.load(path, allow_pickle=False))


def _read_npz(path: Path) -> _Arrays:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        point_key = next((key for key in NPZ_POINT_KEYS if key in keys), None)
        if point_key is None:
            if len(keys) == 1:
                return _array(str(path), archive[keys[0]])
            raise CloudFileError(
                f"{path}: no points array (looked for "
                f"{', '.join(NPZ_POINT_KEYS)}; found {', '.join(keys)})"
            )
        colour_key = next((key for key in NPZ_COLOUR_KEYS if key in keys), None)
        colors = None if colour_key is None else archive[colour_key]
        return _Arrays(archive[point_key], colors, [])


def _array(source: str, array: np.ndarray) -> _Arrays:
    """A structured array, (N, 3) xyz or (N, >= 6) with RGB in columns 3-5."""
    if array.dtype.names:
        return _fields(source, array)
    if array.ndim != 2 or array.shape[1] not in (3, *range(6, 17)):
        raise CloudFileError(
            f"{source}: array of shape {array.shape}; expected (N, 3) xyz or (N, 6+) xyz rgb ..."
        )
    if array.shape[1] == 3:
        return _Arrays(array, None, [])
    notes = (
        []
        if array.shape[1] == 6
        else [f"{array.shape[1]} columns: 0-2 read as xyz, 3-5 as RGB, the rest ignored"]
    )
    return _Arrays(array[:, :3], array[:, 3:6], notes)


_READERS: dict[str, tuple[str, Callable[[Path], _Arrays]]] = {
    ".ply": ("PLY", _read_ply),
    ".pcd": ("PCD", _read_pcd),
    ".las": ("LAS", _read_las),
    ".laz": ("LAZ", _read_las),
    ".npy": ("NPY", _read_npy),
    ".npz": ("NPZ", _read_npz),
}
