"""Scene accumulation: partial point clouds fused in a fixed frame into a sparse voxel map.

Voxels are identified by an int64 key (the x, y, z voxel indices packed in 21 bits each, so keys
never collide) and kept sorted by it, so a cloud merges into the map with one sort of its own
keys and one linear merge. The per-voxel state is stored by columns: position and color sums
(divided by the counts they are exact running means), point counts, the stamp the voxel was last
seen at and a serial number recording the order voxels were created in.

The scene version lets the model reuse a scene encoding. It bumps when the voxels added and
removed since the last bump reach `change_fraction` of the map (the larger of its size then and
now), so re-observing the same view refines the means without a bump while a new region bumps.
Changes add up across calls, so a map that grows a little at a time still bumps eventually.
Snapshots also carry the running total of voxels added and removed (`changes`), so the worker
can tell how much the scene moved on since the snapshot it encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_AXIS_BITS = 21
_INDEX_OFFSET = 1 << (_AXIS_BITS - 1)  # voxel indices in [-2**20, 2**20) become non-negative

# Rows of the int64 table, one column per voxel.
_KEY = 0
_SERIAL = 1  # increases with creation order; breaks eviction ties
_INT_ROWS = 2
# Rows of the float64 table. Counts are floats (exact far beyond any real count, 2**53) so that
# everything a voxel sums when seen again is one block, added in one operation.
_POSITION_SUMS = 0  # x, y, z: three rows from here
_COLOR_SUMS = 3  # r, g, b
_COUNT = 6  # points fused
_COLOR_COUNT = 7  # points fused that came with a color
_ADDITIVE = slice(0, 8)
_LAST_SEEN = 8  # stamp, seconds
_FLOAT_ROWS = 9


@dataclass(frozen=True)
class AccumulatorConfig:
    """Tuning of `SceneAccumulator`; lengths in metres of the fixed frame, times in seconds."""

    voxel_size: float = 0.02
    time_window_s: float = 0.0  # `expire` drops voxels not seen for longer; 0 keeps them forever
    max_voxels: int = 300_000  # over it, the oldest last-seen go first, ties by creation order
    crop_min: tuple[float, float, float] | None = None  # points outside [crop_min, crop_max]
    crop_max: tuple[float, float, float] | None = None  # are dropped on insertion (inclusive)
    change_fraction: float = 0.02  # share of voxels added + removed that bumps the version

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if not self.time_window_s >= 0:
            raise ValueError(f"time_window_s must be >= 0, got {self.time_window_s}")
        if self.max_voxels < 1:
            raise ValueError(f"max_voxels must be >= 1, got {self.max_voxels}")
        if not 0 <= self.change_fraction <= 1:
            raise ValueError(f"change_fraction must be in [0, 1], got {self.change_fraction}")
        both_bounds = self.crop_min is not None and self.crop_max is not None
        if both_bounds and np.any(np.asarray(self.crop_min) > np.asarray(self.crop_max)):
            raise ValueError(f"crop_min {self.crop_min} exceeds crop_max {self.crop_max}")


@dataclass(frozen=True)
class InsertStats:
    """What one `insert` did: points kept and cropped, voxels created and evicted."""

    accepted: int
    cropped: int
    new_voxels: int
    evicted: int
    version_changed: bool


@dataclass(frozen=True)
class SceneSnapshot:
    """A copy of the map, voxels in key order (x, then y, then z index)."""

    points: np.ndarray  # (M, 3) float32 mean position per voxel
    colors: np.ndarray  # (M, 3) uint8 mean color per voxel; 0 where no point came with a color
    version: int
    stamp_s: float | None  # newest stamp among inserts that kept points; None when none did
    changes: int = 0  # voxels added and removed since the map was made, in total

    @property
    def num_voxels(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class _Voxels:
    """Voxels by columns, keys increasing: ints (_INT_ROWS, V) int64, floats (_FLOAT_ROWS, V)."""

    ints: np.ndarray
    floats: np.ndarray

    @classmethod
    def empty(cls) -> _Voxels:
        return cls(np.empty((_INT_ROWS, 0), np.int64), np.empty((_FLOAT_ROWS, 0)))

    def __len__(self) -> int:
        return self.ints.shape[1]

    def take(self, indices: np.ndarray) -> _Voxels:
        """The voxels at indices (K,) int64."""
        # take by index measured three times faster than compress along axis 1.
        return _Voxels(np.take(self.ints, indices, axis=1), np.take(self.floats, indices, axis=1))

    def rows(self) -> list[np.ndarray]:
        """Every row of both tables, each (V,) contiguous."""
        return [*self.ints, *self.floats]


class _VoxelTable:
    """The map's voxels, rebuilt on each change into the spare of two buffers kept between calls.

    malloc maps every allocation over 32 MB afresh, and the page faults of a new 300k-voxel
    table on each insert cost about as much as the rest of the insert.
    """

    def __init__(self) -> None:
        self._buffers = [_Voxels.empty(), _Voxels.empty()]
        self._size = 0

    @property
    def voxels(self) -> _Voxels:
        """The current voxels, as views into the buffer (valid until the next rebuild)."""
        current = self._buffers[0]
        return _Voxels(current.ints[:, : self._size], current.floats[:, : self._size])

    def rebuild(self, keep: np.ndarray | None, before: np.ndarray, new: _Voxels) -> None:
        """Keeps the current voxels where keep (V,) bool is True (all if None), inserts `new`.

        New voxel i goes just before current voxel before[i]; before (B,) int64 is non-decreasing.
        """
        current = self.voxels
        kept_before = np.arange(len(current) + 1)  # kept voxels before each position
        if keep is not None:
            np.cumsum(keep, out=kept_before[1:])
        size = int(kept_before[-1]) + len(new)
        new_at = kept_before[before] + np.arange(len(new))
        inserted_up_to = np.cumsum(np.bincount(before, minlength=len(current) + 1))
        old_at = kept_before[:-1] + inserted_up_to[:-1]
        if keep is not None:
            # Dropped voxels all go to one scratch column past the end, so that no kept voxel's
            # column is written twice (numpy promises no order for repeated indices).
            old_at = np.where(keep, old_at, size)

        # Row by row: numpy's 2-D fancy assignment along axis 1 measured twice as slow.
        for target, old, added in zip(
            self._spare(size + 1).rows(), current.rows(), new.rows(), strict=True
        ):
            target[old_at] = old
            target[new_at] = added
        self._buffers.reverse()
        self._size = size

    def clear(self) -> None:
        self._size = 0

    def _spare(self, size: int) -> _Voxels:
        """The spare buffer, grown by at least a quarter when smaller than `size` voxels."""
        if len(self._buffers[1]) < size:
            capacity = max(size, len(self._buffers[1]) * 5 // 4)
            self._buffers[1] = _Voxels(
                np.empty((_INT_ROWS, capacity), np.int64), np.empty((_FLOAT_ROWS, capacity))
            )
        return self._buffers[1]


class SceneAccumulator:
    """Fuses point clouds given in the fixed frame into a voxel map; see the module docstring."""

    def __init__(self, config: AccumulatorConfig) -> None:
        self.config = config
        self._table = _VoxelTable()
        self._version = 0
        self._size_at_version = 0
        self._changes_since_version = 0
        self._total_changes = 0
        self._next_serial = 0
        self._stamp_s: float | None = None
        # Keys pack indices in [-2**20, 2**20); a voxel of margin absorbs rounding in the floor.
        self._max_abs_coordinate = (_INDEX_OFFSET - 1) * config.voxel_size

    @property
    def version(self) -> int:
        return self._version

    @property
    def max_abs_coordinate(self) -> float:
        """Points must lie strictly within ± this many metres of the origin on every axis."""
        return self._max_abs_coordinate

    @property
    def num_voxels(self) -> int:
        return len(self._table.voxels)

    def insert(self, points: np.ndarray, colors: np.ndarray | None, stamp_s: float) -> InsertStats:
        """Fuses points (N, 3) float32 in the fixed frame, with colors (N, 3) uint8 or None.

        Raises ValueError, leaving the map untouched, on bad shapes or dtypes, non-finite points
        or stamp, or points too far from the origin for the key packing (2**20 voxels per axis).
        """
        points = np.asarray(points, np.float32)
        self._check(points, colors, stamp_s)
        total = len(points)
        inside = self._crop_mask(points)
        if inside is not None:
            points = points[inside]
            colors = None if colors is None else colors[inside]
        if len(points) == 0:
            return InsertStats(0, total, 0, 0, False)

        cloud = self._voxelize(points, colors, stamp_s)
        self._next_serial += len(points)
        new_voxels, evicted = self._merge(cloud, stamp_s)
        self._stamp_s = stamp_s if self._stamp_s is None else max(self._stamp_s, stamp_s)
        changed = self._record_change(new_voxels + evicted)
        return InsertStats(len(points), total - len(points), new_voxels, evicted, changed)

    def expire(self, now_s: float) -> int:
        """Drops voxels last seen more than `time_window_s` before now_s; returns how many."""
        if self.config.time_window_s == 0:
            return 0
        last_seen = self._table.voxels.floats[_LAST_SEEN]
        keep = now_s - last_seen <= self.config.time_window_s
        removed = len(keep) - int(np.count_nonzero(keep))
        if removed:
            self._table.rebuild(keep, np.empty(0, np.int64), _Voxels.empty())
            self._record_change(removed)
        return removed

    def reset(self) -> None:
        """Empties the map and bumps the version."""
        self._total_changes += self.num_voxels
        self._table.clear()
        self._stamp_s = None
        self._bump_version()

    def snapshot(self) -> SceneSnapshot:
        """The voxel means, copied, so later inserts do not change it."""
        floats = self._table.voxels.floats
        points = np.empty((floats.shape[1], 3), np.float32)
        colors = np.empty((floats.shape[1], 3), np.uint8)
        # Voxels never given a color have zero sums, so any positive divisor yields 0 for them.
        color_counts = np.maximum(floats[_COLOR_COUNT], 1)
        for axis in range(3):  # axis by axis, as in _voxelize
            points[:, axis] = floats[_POSITION_SUMS + axis] / floats[_COUNT]
            colors[:, axis] = np.rint(floats[_COLOR_SUMS + axis] / color_counts)
        return SceneSnapshot(points, colors, self._version, self._stamp_s, self._total_changes)

    def _check(self, points: np.ndarray, colors: np.ndarray | None, stamp_s: float) -> None:
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {points.shape}")
        if colors is not None and (colors.shape != points.shape or colors.dtype != np.uint8):
            raise ValueError(
                f"colors must be (N, 3) uint8 like points {points.shape}, "
                f"got {colors.shape} {colors.dtype}"
            )
        if not np.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be finite, got {stamp_s}")
        # One max finds NaN (it propagates), inf and out-of-range points together.
        if len(points) and not np.abs(points).max() < self._max_abs_coordinate:
            if not np.isfinite(points).all():
                raise ValueError("points contain NaN or inf; remove them before inserting")
            raise ValueError(
                f"points beyond ±{self._max_abs_coordinate:.0f} m, the range that voxel_size "
                f"{self.config.voxel_size} allows"
            )

    def _crop_mask(self, points: np.ndarray) -> np.ndarray | None:
        """(N,) bool of points inside the crop box, or None without a crop."""
        low, high = self.config.crop_min, self.config.crop_max
        if low is None and high is None:
            return None
        inside = np.ones(len(points), bool)
        for axis in range(3):  # axis by axis, as in _voxelize
            if low is not None:
                inside &= points[:, axis] >= np.float32(low[axis])
            if high is not None:
                inside &= points[:, axis] <= np.float32(high[axis])
        return inside

    def _voxelize(self, points: np.ndarray, colors: np.ndarray | None, stamp_s: float) -> _Voxels:
        """The voxels a cloud hits, with the cloud's sums and counts."""
        indices = np.empty((3, len(points)), np.int64)
        for axis in range(3):
            # Axis by axis: numpy's elementwise ops and reductions measured five times slower on
            # (N, 3) arrays than on rows of (3, N) ones.
            indices[axis] = np.floor(points[:, axis] / np.float32(self.config.voxel_size))
        x, y, z = indices + _INDEX_OFFSET
        keys = (x << 2 * _AXIS_BITS) | (y << _AXIS_BITS) | z
        order = _stable_voxel_order(indices, keys)
        sorted_keys = keys[order]
        is_first = np.empty(len(keys), bool)
        is_first[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_first[1:])
        starts = np.flatnonzero(is_first)
        voxel_of_point = np.empty_like(order)
        voxel_of_point[order] = np.cumsum(is_first) - 1
        num_voxels = len(starts)

        ints = np.empty((_INT_ROWS, num_voxels), np.int64)
        ints[_KEY] = sorted_keys[starts]
        # The order is stable, so each voxel starts with its first point in the cloud, which
        # orders it among the voxels the cloud creates.
        ints[_SERIAL] = self._next_serial + order[starts]
        floats = np.empty((_FLOAT_ROWS, num_voxels))
        for axis in range(3):
            floats[_POSITION_SUMS + axis] = np.bincount(voxel_of_point, points[:, axis], num_voxels)
            floats[_COLOR_SUMS + axis] = (
                0 if colors is None else np.bincount(voxel_of_point, colors[:, axis], num_voxels)
            )
        floats[_COUNT] = np.diff(starts, append=len(keys))
        floats[_COLOR_COUNT] = 0 if colors is None else floats[_COUNT]
        floats[_LAST_SEEN] = stamp_s
        return _Voxels(ints, floats)

    def _merge(self, cloud: _Voxels, stamp_s: float) -> tuple[int, int]:
        """Fuses a cloud's voxels into the map; returns the voxels created and evicted."""
        current = self._table.voxels
        map_keys, keys = current.ints[_KEY], cloud.ints[_KEY]
        # A stable sort of the two sorted key arrays is a linear merge in numpy's timsort, 30 %
        # faster than searchsorted here; it puts each map key just before an equal cloud key.
        merged = np.argsort(np.concatenate([map_keys, keys]), kind="stable")
        before = np.flatnonzero(merged >= len(map_keys)) - np.arange(len(keys))
        known = np.zeros(len(keys), bool)
        found = np.flatnonzero(before)
        known[found] = map_keys[before[found] - 1] == keys[found]
        seen, created = np.flatnonzero(known), np.flatnonzero(~known)
        known_at = before[seen] - 1
        seen_again = np.take(cloud.floats[_ADDITIVE], seen, axis=1)
        # Row by row with add.at: 2-D fancy indexing along axis 1 measured three times slower.
        for total, added in zip(current.floats[_ADDITIVE], seen_again, strict=True):
            np.add.at(total, known_at, added)
        # An old cloud arriving late must not make the voxels it shares look older.
        last_seen = current.floats[_LAST_SEEN]
        last_seen[known_at] = np.maximum(last_seen[known_at], stamp_s)

        new, before = cloud.take(created), before[created]
        keep = None
        excess = len(current) + len(new) - self.config.max_voxels
        if excess > 0:
            evict = _oldest(
                np.concatenate([last_seen, new.floats[_LAST_SEEN]]),
                np.concatenate([current.ints[_SERIAL], new.ints[_SERIAL]]),
                excess,
            )
            keep = ~evict[: len(current)]
            new_kept = ~evict[len(current) :]
            if not new_kept.all():
                new, before = new.take(np.flatnonzero(new_kept)), before[new_kept]
        if len(new) or keep is not None:
            self._table.rebuild(keep, before, new)
        return len(created), max(excess, 0)

    def _record_change(self, changed_voxels: int) -> bool:
        """Counts voxels added or removed; bumps the version once they reach change_fraction."""
        self._changes_since_version += changed_voxels
        self._total_changes += changed_voxels
        reference = max(self._size_at_version, self.num_voxels)
        if self._changes_since_version == 0:
            return False
        if self._changes_since_version < self.config.change_fraction * reference:
            return False
        self._bump_version()
        return True

    def _bump_version(self) -> None:
        self._version += 1
        self._size_at_version = self.num_voxels
        self._changes_since_version = 0


def _stable_voxel_order(indices: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Stable argsort (N,) of points by voxel, from their indices (3, N) and keys (N,) int64."""
    x, y, z = indices - indices.min(axis=1, keepdims=True)
    x_bits, y_bits, z_bits = (int(top).bit_length() for top in (x.max(), y.max(), z.max()))
    index_bits = (len(keys) - 1).bit_length()
    if x_bits + y_bits + z_bits + index_bits > 63:  # a cloud spanning thousands of voxels
        return np.argsort(keys, kind="stable")
    # Keys local to the cloud leave room for the point index in their low bits, and sorting
    # those is a stable argsort about three times faster than np.argsort of the keys.
    packed = (x << y_bits + z_bits) | (y << z_bits) | z
    packed <<= index_bits
    packed |= np.arange(len(keys))
    packed.sort()
    return packed & ((1 << index_bits) - 1)


def _oldest(last_seen: np.ndarray, serials: np.ndarray, count: int) -> np.ndarray:
    """(V,) bool marking the `count` voxels with the oldest last_seen, ties by lowest serial."""
    # Partitions are linear time; a full lexsort of the map would dominate the insert.
    cutoff = np.partition(last_seen, count - 1)[count - 1]
    oldest = last_seen < cutoff
    tied = np.flatnonzero(last_seen == cutoff)
    from_tied = count - int(np.count_nonzero(oldest))
    oldest[tied[np.argpartition(serials[tied], from_tied - 1)[:from_tied]]] = True
    return oldest
