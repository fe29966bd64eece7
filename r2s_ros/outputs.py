"""ROS messages built from the worker's answers: results, the target cloud, RViz markers."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from r2s_model.model import RelevantPrediction, SegmentationStatus
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.msg import RelevantElement, SegmentationResult
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.worker import Answer

STATUS = {
    SegmentationStatus.OK: SegmentationResult.STATUS_OK,
    SegmentationStatus.NO_TARGET: SegmentationResult.STATUS_NO_TARGET,
    SegmentationStatus.EMPTY_SCENE: SegmentationResult.STATUS_EMPTY_SCENE,
    SegmentationStatus.INVALID_INSTRUCTION: SegmentationResult.STATUS_INVALID_INSTRUCTION,
}
TARGET_COLOR = ColorRGBA(r=1.0, g=0.1, b=0.1, a=0.6)
RELEVANT_COLOR = ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.35)
LABEL_COLOR = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
LABEL_HEIGHT_M = 0.15
MIN_BOX_SIDE_M = 0.01  # RViz does not draw a zero-thickness cube


def scene_header(scene: SceneSnapshot | None, frame: str) -> Header:
    """The header of every output about `scene`: its newest cloud stamp, in the fixed frame."""
    stamp = Time()
    if scene is not None and scene.stamp_s is not None:
        nanoseconds = round(scene.stamp_s * 1e9)
        stamp = Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)
    return Header(stamp=stamp, frame_id=frame)


def extent(points: np.ndarray) -> tuple[Point, Vector3]:
    """Centroid and axis-aligned size of points (K, 3), K > 0."""
    centroid = points.mean(axis=0, dtype=np.float64)
    size = points.max(axis=0) - points.min(axis=0)
    return Point(x=float(centroid[0]), y=float(centroid[1]), z=float(centroid[2])), Vector3(
        x=float(size[0]), y=float(size[1]), z=float(size[2])
    )


def result_message(answer: Answer, frame: str) -> SegmentationResult:
    """The SegmentationResult of an answer; total_ms is left for the publisher to stamp."""
    job, output, scene = answer.job, answer.output, answer.scene
    result = SegmentationResult(
        header=scene_header(scene, frame),
        instruction=job.text,
        instruction_id=job.instruction_id,
        queue_ms=answer.queue_ms,
        encode_ms=answer.encode_ms,
        scene_encoding_reused=answer.reused_encoding,
    )
    if scene is not None:
        result.scene_version = scene.version
        result.scene_point_count = scene.num_voxels
    if output is None:
        result.status = (
            SegmentationResult.STATUS_CANCELLED
            if answer.cancelled
            else SegmentationResult.STATUS_ERROR
        )
        result.error = answer.error
        return result
    result.status = STATUS[output.status]
    result.error = output.reason
    result.answer = output.answer
    result.score = output.target_score
    result.stage1_ms = output.timings_ms.get("stage1", 0.0)
    result.stage2_ms = output.timings_ms.get("stage2", 0.0)
    target = scene.points[output.target_mask]
    result.target_point_count = len(target)
    if len(target):
        result.target_centroid, result.target_size = extent(target)
    result.relevant = relevant_elements(scene, output.relevant)
    return result


def relevant_elements(
    scene: SceneSnapshot, predictions: list[RelevantPrediction]
) -> list[RelevantElement]:
    """RelevantElement messages of stage 1's elements, their boxes from the scene's points."""
    elements = []
    for prediction in predictions:
        element = RelevantElement(name=prediction.name, score=prediction.score)
        members = scene.points[prediction.mask]
        element.point_count = len(members)
        if len(members):
            element.centroid, element.size = extent(members)
        elements.append(element)
    return elements


def target_cloud(answer: Answer, header: Header) -> PointCloud2:
    """The target's points with their scene colours; an empty cloud when there is no target."""
    scene, output = answer.scene, answer.output
    if scene is None or output is None:
        return encode_cloud(np.empty((0, 3), np.float32), np.empty((0, 3), np.uint8), header)
    mask = output.target_mask
    return encode_cloud(scene.points[mask], scene.colors[mask], header)


def relevant_markers(result: SegmentationResult) -> MarkerArray:
    """DELETEALL (clears the previous answer's markers), then a box and a label per relevant
    element with points, and the target as a box of its own colour."""
    header = result.header
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for index, element in enumerate(result.relevant):
        if element.point_count:
            label = f"{element.name} ({element.score:.2f})"
            box = (element.centroid, element.size)
            markers += _box_and_label(header, "relevant", index, box, RELEVANT_COLOR, label)
    if result.target_point_count:
        box = (result.target_centroid, result.target_size)
        label = result.answer or "target"
        markers += _box_and_label(header, "target", 0, box, TARGET_COLOR, label)
    return MarkerArray(markers=markers)


def _box_and_label(
    header: Header,
    namespace: str,
    index: int,
    box: tuple[Point, Vector3],
    color: ColorRGBA,
    text: str,
) -> list[Marker]:
    centroid, size = box
    cube = Marker(header=header, ns=namespace, id=index, type=Marker.CUBE, color=color)
    cube.pose.position = centroid
    cube.pose.orientation.w = 1.0
    cube.scale = Vector3(
        x=max(size.x, MIN_BOX_SIDE_M), y=max(size.y, MIN_BOX_SIDE_M), z=max(size.z, MIN_BOX_SIDE_M)
    )
    label = Marker(
        header=header,
        ns=f"{namespace}_label",
        id=index,
        type=Marker.TEXT_VIEW_FACING,
        color=LABEL_COLOR,
        text=text,
    )
    label.scale.z = LABEL_HEIGHT_M
    label.pose.orientation.w = 1.0
    label.pose.position = Point(x=centroid.x, y=centroid.y, z=centroid.z + size.z / 2 + 0.1)
    return [cube, label]


def downsample(
    points: np.ndarray, colors: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points of the scene, taken at an even stride (deterministic, cheap)."""
    stride = max(1, -(-len(points) // max_points))
    return points[::stride], colors[::stride]
