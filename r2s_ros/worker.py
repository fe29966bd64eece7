"""The inference worker: one thread, fed by a bounded instruction queue, off the ROS executor.

Queue policy: at most `capacity` instructions wait. When a new one arrives at a full queue, the
OLDEST waiting instruction is dropped and answered with STATUS_ERROR "dropped: queue full" (the
newest instructions are the ones a user is waiting for). Every instruction thus gets exactly one
answer: a model result, an error, or the drop notice.

A job can report its progress (`on_progress`: the worker took it, stage 1's relevant elements)
and be cancelled at any point: a waiting job is answered at once, a running one at the worker's
next check (before and after the scene encoding, after stage 1, after stage 2). Either way it
gets its one answer, `cancelled`.

Moving-scene policy (`EncodingPolicy`): the encoder dominates the cost, and on a moving robot
the scene changes with every cloud, so the worker never encodes per cloud, only when it takes a
job, and then the scene snapshot of that moment, of which at most `max_points` points are
encoded (the answer's masks still cover every point of the snapshot). It
reuses the last encoding instead when (a) its snapshot was taken after the job arrived (a job
that waited behind an encoding gets a scene at least as new as the one it was asked about), or
(b) the voxels added and removed since that snapshot are at most `reuse_fraction` of it. A job
thus waits for at most the job in progress and one encoding of its own: within twice the latency
of a first instruction on a static scene, however fast clouds come.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from r2s_model.model import RelevantPrediction, SegmentationOutput
from r2s_model.scene import SceneEncoding
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.params import NodeParameters

QUEUE_FULL = "dropped: queue full"
SHUTTING_DOWN = "dropped: node shutting down"
CANCELLED = "cancelled by the client"
ENCODING = "encoding"  # progress stages
RELEVANT = "relevant"


# What R2SModel.segment calls with stage 1's elements before stage 2 starts.
OnRelevant = Callable[[list[RelevantPrediction]], None] | None


class SegmentationModel(Protocol):
    def encode_scene(
        self, points: np.ndarray, colors: np.ndarray | None, max_points: int | None
    ) -> SceneEncoding: ...

    def segment(
        self, scene: SceneEncoding, instruction: str, on_relevant: OnRelevant = None
    ) -> SegmentationOutput: ...


@dataclass(frozen=True)
class EncodingPolicy:
    """When the worker encodes the scene anew (see the module doc)."""

    reuse_fraction: float = 0.1  # reuse while this share of the voxels changed, at most
    max_points: int = 200_000  # at most this many of the snapshot's points are encoded

    @classmethod
    def from_parameters(cls, parameters: NodeParameters) -> EncodingPolicy:
        return cls(parameters.encoding_reuse_fraction, parameters.max_encoded_points)

    def __post_init__(self) -> None:
        if not 0 <= self.reuse_fraction <= 1:
            raise ValueError(f"reuse_fraction must be in [0, 1], got {self.reuse_fraction}")
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {self.max_points}")


@dataclass(frozen=True)
class _Encoded:
    """The last encoding: of `scene`, a snapshot taken at `taken_s` (perf_counter) of
    a map of `num_voxels` voxels whose change total was `scene.changes`."""

    scene: SceneSnapshot
    encoding: SceneEncoding
    taken_s: float
    num_voxels: int


@dataclass(frozen=True)
class Progress:
    """How far the worker got with a job: `stage` ENCODING (it took the job) or RELEVANT
    (stage 1 done: `relevant` holds its elements, masks over `scene`)."""

    stage: str
    scene: SceneSnapshot | None = None
    relevant: list[RelevantPrediction] = field(default_factory=list)


class _Cancelled(Exception):
    """Abandons the job in progress."""


@dataclass(eq=False)
class InstructionJob:
    """One instruction waiting for its answer; `done` resolves to what the answer callback
    sets (the node: the published SegmentationResult). `on_progress` runs on the worker
    thread; so does `cancel_requested`, which the worker's checks ask besides `cancel`."""

    text: str
    instruction_id: str
    received_s: float = field(default_factory=time.perf_counter)
    done: Future = field(default_factory=Future)
    on_progress: Callable[[Progress], None] | None = None
    cancel_requested: Callable[[], bool] = lambda: False
    cancelled: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Raises _Cancelled for a cancelled job."""
        if self.cancelled.is_set() or self.cancel_requested():
            raise _Cancelled

    def report(self, progress: Progress) -> None:
        """check(), then hands progress to on_progress."""
        self.check()
        if self.on_progress is not None:
            self.on_progress(progress)


@dataclass
class Answer:
    """What the worker made of a job: a model output, or an error reason (never both)."""

    job: InstructionJob
    output: SegmentationOutput | None = None
    error: str = ""
    cancelled: bool = False
    scene: SceneSnapshot | None = None
    queue_ms: float = 0.0
    encode_ms: float = 0.0
    reused_encoding: bool = False


class InferenceWorker:
    """Answers jobs one at a time on its own thread and hands each Answer to `on_answer`.

    `on_answer` runs on the worker thread (for a dropped or cancelled waiting job, on the
    thread that submitted or cancelled);
    it must publish the answer and resolve `answer.job.done`.
    """

    def __init__(
        self,
        model: SegmentationModel,
        snapshot_scene: Callable[[], SceneSnapshot],
        on_answer: Callable[[Answer], None],
        capacity: int,
        policy: EncodingPolicy = EncodingPolicy(),
    ) -> None:
        self._model = model
        self._policy = policy
        self._snapshot_scene = snapshot_scene
        self._on_answer = on_answer
        self._capacity = capacity
        self._pending: deque[InstructionJob] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._cached: _Encoded | None = None
        self._thread = threading.Thread(target=self._run, name="r2s-inference", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(self, job: InstructionJob) -> None:
        """Queues `job`; at capacity the oldest waiting job is answered as dropped."""
        with self._wakeup:
            dropped = self._pending.popleft() if len(self._pending) >= self._capacity else None
            self._pending.append(job)
            self._wakeup.notify()
        if dropped is not None:
            self._on_answer(Answer(dropped, error=QUEUE_FULL))

    def cancel(self, job: InstructionJob) -> None:
        """Cancels `job`: a waiting job is answered now, a running one at the next check; one
        already answered keeps its answer."""
        job.cancelled.set()
        with self._wakeup:
            waiting = job in self._pending
            if waiting:
                self._pending.remove(job)
        if waiting:
            self._on_answer(Answer(job, error=CANCELLED, cancelled=True))

    def stop(self) -> None:
        """Finishes the job in progress, answers the waiting ones as dropped, joins the thread."""
        with self._wakeup:
            self._stopping = True
            waiting = list(self._pending)
            self._pending.clear()
            self._wakeup.notify()
        for job in waiting:
            self._on_answer(Answer(job, error=SHUTTING_DOWN))
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
            self._on_answer(self._answer(job))

    def _answer(self, job: InstructionJob) -> Answer:
        answer = Answer(job, queue_ms=(time.perf_counter() - job.received_s) * 1000.0)
        try:
            job.report(Progress(ENCODING))
            scene, encoding = self._encoding(answer)
            answer.scene = scene
            job.check()

            def stage1_done(relevant: list[RelevantPrediction]) -> None:
                job.report(Progress(RELEVANT, scene, relevant))

            output = self._model.segment(encoding, job.text, on_relevant=stage1_done)
            job.check()
            answer.output = output
        except _Cancelled:
            answer.error, answer.cancelled = CANCELLED, True
        except Exception as error:  # any model failure becomes this job's ERROR, not a crash
            answer.output = None
            answer.error = f"inference failed: {type(error).__name__}: {error}"
        return answer

    def _encoding(self, answer: Answer) -> tuple[SceneSnapshot, SceneEncoding]:
        """The scene to answer on and its encoding: the last one while the policy allows,
        else the current snapshot's, encoded now."""
        taken_s = time.perf_counter()
        scene = self._snapshot_scene()
        cached = self._cached
        if cached is not None and self._reusable(cached, scene, answer.job):
            answer.reused_encoding = True
            return cached.scene, cached.encoding
        self._cached = None  # a failed encode must not leave the previous scene's cache behind
        encoding = self._model.encode_scene(scene.points, scene.colors, self._policy.max_points)
        answer.encode_ms = (time.perf_counter() - taken_s) * 1000.0
        self._cached = _Encoded(scene, encoding, taken_s, scene.num_voxels)
        return scene, encoding

    def _reusable(self, cached: _Encoded, scene: SceneSnapshot, job: InstructionJob) -> bool:
        if job.received_s <= cached.taken_s:
            return True
        changed = scene.changes - cached.scene.changes
        return changed <= self._policy.reuse_fraction * max(cached.num_voxels, 1)
