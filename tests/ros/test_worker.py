"""InferenceWorker in-process with a real tiny model: answers, failures, queue policy, the
moving-scene policy (when the scene is encoded anew).

The worker is held busy by a scene snapshot that blocks on a gate (the snapshot callable is the
node's side of the contract, not the model's), so jobs can be made to wait deterministically.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from r2s_model.model import R2SModel, SegmentationOutput
from r2s_model.scene import SceneEncoding
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.worker import (
    CANCELLED,
    ENCODING,
    QUEUE_FULL,
    RELEVANT,
    SHUTTING_DOWN,
    Answer,
    EncodingPolicy,
    InferenceWorker,
    InstructionJob,
    OnRelevant,
    Progress,
)
from tests.model.scenes import make_box_scene
from tests.model.tiny import HookedModel, tiny_model

WAIT_S = 30.0
CAPACITY = 2
FAILING_INSTRUCTION = "the object that breaks the model"


class FailsOnOneInstruction:
    """The real tiny model, except that `segment` raises for FAILING_INSTRUCTION; it keeps
    the encodings it made.

    Random weights never fail on their own, so a thin wrapper is the only way to force a failure
    of the real model; every other call is the real model's.
    """

    def __init__(self, model: R2SModel) -> None:
        self._model = model
        self.encodings: list[SceneEncoding] = []

    def encode_scene(
        self, points: np.ndarray, colors: np.ndarray | None, max_points: int | None
    ) -> SceneEncoding:
        self.encodings.append(self._model.encode_scene(points, colors, max_points))
        return self.encodings[-1]

    def segment(
        self, scene: SceneEncoding, instruction: str, on_relevant: OnRelevant = None
    ) -> SegmentationOutput:
        if instruction == FAILING_INSTRUCTION:
            raise RuntimeError("simulated model failure")
        return self._model.segment(scene, instruction, on_relevant)


BOX_POINTS = 2000
DEFAULT_POLICY = EncodingPolicy()


def box_snapshot(version: int, changes: int = 0) -> SceneSnapshot:
    points, colors, _ = make_box_scene(0, BOX_POINTS)
    colors_u8 = np.rint(colors * 255).astype(np.uint8)
    return SceneSnapshot(
        points.astype(np.float32), colors_u8, version, stamp_s=float(version), changes=changes
    )


def moved_on(scene: SceneSnapshot, changed_voxels: int) -> SceneSnapshot:
    """The scene after `changed_voxels` voxels were added or removed."""
    return dataclasses.replace(
        scene, version=scene.version + 1, changes=scene.changes + changed_voxels
    )


class Harness:
    """A worker plus the node's side: a swappable scene that can block, and the answers given.
    With `moving`, every snapshot finds the whole scene changed since the one before."""

    def __init__(
        self, model: FailsOnOneInstruction, policy: EncodingPolicy = DEFAULT_POLICY
    ) -> None:
        self.scene = box_snapshot(version=1)
        self.moving = False
        self.gate = threading.Event()  # cleared: the next snapshot blocks until it is set
        self.gate.set()
        self.snapshot_taken = threading.Event()
        self.worker = InferenceWorker(model, self._snapshot, self._on_answer, CAPACITY, policy)

    def _snapshot(self) -> SceneSnapshot:
        self.snapshot_taken.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        if self.moving:
            self.scene = moved_on(self.scene, BOX_POINTS)
        return self.scene

    def _on_answer(self, answer: Answer) -> None:
        answer.job.done.set_result(answer)

    def submit(self, text: str) -> InstructionJob:
        job = InstructionJob(text, f"id-{text}")
        self.worker.submit(job)
        return job

    def ask(self, text: str) -> Answer:
        return self.submit(text).done.result(timeout=WAIT_S)

    def hold_busy(self) -> InstructionJob:
        """Submits a job and returns once the worker is blocked in its scene snapshot."""
        self.gate.clear()
        self.snapshot_taken.clear()
        job = self.submit("the job in progress")
        assert self.snapshot_taken.wait(WAIT_S)
        return job


@pytest.fixture(scope="module")
def model() -> FailsOnOneInstruction:
    return FailsOnOneInstruction(tiny_model(seed=1).eval())


@pytest.fixture
def harness(model: FailsOnOneInstruction) -> Iterator[Harness]:
    harness = Harness(model)
    yield harness
    harness.gate.set()
    harness.worker.stop()


def test_model_failure_is_an_error_answer_and_the_worker_goes_on(harness: Harness) -> None:
    failed = harness.ask(FAILING_INSTRUCTION)
    assert failed.output is None
    assert "RuntimeError" in failed.error
    assert "simulated model failure" in failed.error

    later = harness.ask("the red box")
    assert later.output is not None, later.error
    assert later.error == ""


def test_full_queue_drops_the_oldest_waiting_job(harness: Harness) -> None:
    in_progress = harness.hold_busy()
    waiting = [harness.submit(f"waiting {index}") for index in range(CAPACITY + 1)]
    assert waiting[0].done.done(), "the drop is answered at once, on the submitting thread"
    assert waiting[0].done.result().error == QUEUE_FULL
    assert harness.worker.depth == CAPACITY

    harness.gate.set()
    for job in [in_progress, *waiting[1:]]:
        answer = job.done.result(timeout=WAIT_S)
        assert answer.output is not None, answer.error


def test_shutdown_answers_waiting_jobs_and_finishes_the_one_in_progress(harness: Harness) -> None:
    in_progress = harness.hold_busy()
    waiting = [harness.submit(f"waiting {index}") for index in range(CAPACITY)]
    stopper = threading.Thread(target=harness.worker.stop)
    stopper.start()
    for job in waiting:
        assert job.done.result(timeout=WAIT_S).error == SHUTTING_DOWN
    assert stopper.is_alive(), "stop() must wait for the job in progress"

    harness.gate.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive()
    assert in_progress.done.result(timeout=0).output is not None


def test_scene_encoding_is_reused_while_the_scene_changed_little(harness: Harness) -> None:
    first = harness.ask("the first box")
    assert not first.reused_encoding
    assert first.encode_ms > 0.0

    same = harness.ask("the second box")
    assert same.reused_encoding
    assert same.encode_ms == 0.0
    assert same.scene is first.scene

    # A new version, but a tenth of the voxels (the default reuse_fraction) changed: reused.
    harness.scene = moved_on(harness.scene, BOX_POINTS // 10)
    little = harness.ask("the third box")
    assert little.reused_encoding and little.scene is first.scene

    harness.scene = moved_on(harness.scene, 1)  # one voxel more than a tenth since the encoding
    changed = harness.ask("the fourth box")
    assert not changed.reused_encoding
    assert changed.encode_ms > 0.0
    assert changed.scene.version == harness.scene.version


def test_jobs_that_waited_behind_an_encoding_reuse_it_on_a_moving_scene(harness: Harness) -> None:
    """Every snapshot finds a new scene: the job in progress encodes, the next job (it came
    after that snapshot) encodes anew, and the jobs that waited behind it reuse its encoding."""
    harness.moving = True
    in_progress = harness.hold_busy()
    waiting = [harness.submit(f"waiting {index}") for index in range(CAPACITY)]
    harness.gate.set()
    first, second, third = (job.done.result(timeout=WAIT_S) for job in [in_progress, *waiting])
    assert not first.reused_encoding and not second.reused_encoding
    assert second.scene.version > first.scene.version
    assert third.reused_encoding and third.scene is second.scene

    later = harness.ask("a job after all of them")  # the scene moved on since: encoded anew
    assert not later.reused_encoding and later.scene.version > second.scene.version


def test_at_most_max_points_are_encoded_and_answers_cover_the_whole_scene(
    model: FailsOnOneInstruction,
) -> None:
    """A thinned answer would mark a quarter of the target's points (IoU 0.25 at best)."""
    harness = Harness(model, EncodingPolicy(max_points=BOX_POINTS // 4))
    try:
        answer = harness.ask("the red box")
    finally:
        harness.worker.stop()
    assert answer.output is not None, answer.error
    assert len(model.encodings[-1].cloud.points) == BOX_POINTS // 4
    assert answer.scene.num_voxels == BOX_POINTS  # the snapshot, whole
    np.testing.assert_array_equal(answer.scene.points, harness.scene.points)
    assert len(answer.output.target_mask) == BOX_POINTS  # masks over every scene point
    for element in answer.output.relevant:
        assert len(element.mask) == BOX_POINTS


def test_progress_reports_the_encoding_then_stage_1s_elements(harness: Harness) -> None:
    progress: list[Progress] = []
    job = InstructionJob("the red box", "id-progress", on_progress=progress.append)
    harness.worker.submit(job)
    answer = job.done.result(timeout=WAIT_S)
    assert [p.stage for p in progress] == [ENCODING, RELEVANT]
    assert progress[1].scene is answer.scene
    assert progress[1].relevant == answer.output.relevant


def test_cancel_answers_a_waiting_job_at_once(harness: Harness) -> None:
    in_progress = harness.hold_busy()
    waiting = harness.submit("waiting")
    harness.worker.cancel(waiting)
    assert waiting.done.done(), "a waiting job is answered on the cancelling thread"
    answer = waiting.done.result()
    assert (answer.cancelled, answer.error, answer.output) == (True, CANCELLED, None)
    assert harness.worker.depth == 0

    harness.gate.set()
    assert in_progress.done.result(timeout=WAIT_S).output is not None
    harness.worker.cancel(in_progress)  # too late: the answer stands
    assert not in_progress.done.result().cancelled


def test_cancel_in_stage_1_abandons_stage_2() -> None:
    """The job is cancelled as stage 1 ends: the hook the worker gave the model raises, so the
    model never reaches stage 2 (the hook contract, tests/model/test_model.py)."""
    progress: list[Progress] = []
    job = InstructionJob("the red box", "id-cancel", on_progress=progress.append)
    hook_returned: list[bool] = []

    def cancel_first(_instruction: str, on_relevant: OnRelevant) -> OnRelevant:
        def stage1_done(relevant: list) -> None:
            worker.cancel(job)
            on_relevant(relevant)
            hook_returned.append(True)

        return stage1_done

    model = HookedModel(tiny_model(seed=1).eval(), cancel_first)
    worker = InferenceWorker(
        model, lambda: box_snapshot(1), lambda a: a.job.done.set_result(a), CAPACITY
    )
    try:
        worker.submit(job)
        answer = job.done.result(timeout=WAIT_S)
    finally:
        worker.stop()
    assert (answer.cancelled, answer.error, answer.output) == (True, CANCELLED, None)
    assert answer.scene is not None  # the encoding was done
    assert not hook_returned
    assert [p.stage for p in progress] == [ENCODING]
