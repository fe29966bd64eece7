"""The replay report: per-instruction outcomes scored against the ground truth, written as JSON,
Markdown and top-down PNG renders. Offline and live replays both end here.

An instruction without a model answer (status `error`: failed or dropped; `timeout`: no result
came) scores IoU 0 and counts as wrong on a no-target sample (bags.scoring).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from r2s_model.data.io import SceneArrays
from r2s_model.eval.metrics import summarize
from r2s_model.eval.render import render_top_down
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.bags.scoring import GroundTruthScorer, InstructionScore

ERROR = "error"
TIMEOUT = "timeout"
# Keys of the summary the markdown lists first, with their labels.
HEADLINE = {
    "miou": "mIoU",
    "acc25": "Acc@0.25",
    "acc50": "Acc@0.5",
    "no_target_acc": "no-target accuracy",
    "relevant_recall": "relevant recall",
    "relevant_precision": "relevant precision",
}


class ReplayError(RuntimeError):
    """The replay could not run (no node to replay to, an output bag in the way, ...)."""


@dataclass
class RelevantOutcome:
    """A relevant element the model named: points (R, 3) in the map frame."""

    name: str
    score: float
    points: np.ndarray


@dataclass
class Outcome:
    """What became of one replayed instruction.

    status: a SegmentationStatus value, ERROR or TIMEOUT; predicted_points (P, 3) map-frame
    target points, None without a model answer; scene: the scene it was answered on (live:
    rebuilt from the bag); extra: mode-specific JSON values (timings, scene version, ...).
    """

    index: int
    stamp_ns: int
    text: str
    status: str
    scene: SceneSnapshot
    predicted_points: np.ndarray | None
    answer: str = ""
    error: str = ""
    target_score: float | None = None
    relevant: list[RelevantOutcome] = field(default_factory=list)
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroundTruth:
    """A bag's ground truth: the full scene in the map frame and one record per instruction."""

    scene: SceneArrays
    records: list[dict[str, Any]]

    def record_for(self, outcome: Outcome) -> dict[str, Any] | None:
        """The record of the instruction published at the outcome's bag time with its text."""
        for record in self.records:
            if record.get("stamp_ns") == outcome.stamp_ns and record["question"] == outcome.text:
                return record
        return None


def build_report(
    outcomes: list[Outcome], truth: GroundTruth | None, radius: float, meta: dict[str, Any]
) -> tuple[dict[str, Any], list[InstructionScore | None]]:
    """The report as JSON values, and each outcome's score (None when it has no record)."""
    scorer = None if truth is None else GroundTruthScorer(truth.scene, radius)
    entries, scores = [], []
    for outcome in outcomes:
        record = None if truth is None else truth.record_for(outcome)
        score = None
        if scorer is not None and record is not None:
            score = scorer.score(
                record,
                outcome.scene,
                outcome.predicted_points,
                relevant_points=[element.points for element in outcome.relevant],
                target_score=outcome.target_score,
                latency_ms=outcome.latency_ms,
            )
        entries.append(_entry(outcome, record, score))
        scores.append(score)
    results = [score.result for score in scores if score is not None]
    summary = summarize(results) if results else {}
    summary.pop("latency_ms", None)  # over every answered instruction below, scored or not
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    statuses = [o.status for o in outcomes]
    report = {
        **{key: None for key in HEADLINE},
        **summary,
        "num_instructions": len(outcomes),
        "num_samples": len(results),  # scored: with a ground-truth record
        "latency_ms": _percentiles(latencies),
        "statuses": {status: statuses.count(status) for status in sorted(set(statuses))},
        **meta,
        "match_radius_m": radius,
        "instructions": entries,
    }
    return report, scores


def write_report(
    out: Path,
    report: dict[str, Any],
    scores: list[InstructionScore | None],
    truth: GroundTruth | None,
    max_renders: int,
) -> None:
    """Writes the renders (`<out stem>_renders/`), the Markdown (`<out stem>.md`) and the JSON,
    in that order, so a JSON report on disk means the run finished."""
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.with_name(out.stem + "_renders")
    rendered = [i for i, score in enumerate(scores) if score is not None][:max_renders]
    for stale in folder.glob("*.png"):  # an earlier run's, which may have had more instructions
        stale.unlink()
    if rendered:
        folder.mkdir(exist_ok=True)
    report["renders"] = []
    for i in rendered:
        entry, score = report["instructions"][i], scores[i]
        assert truth is not None and score is not None
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", entry.get("sample_id") or str(i))
        path = folder / f"{i:03d}_{name}.png"
        keep = score.observed  # what the sensor had seen: the scene the model reasoned on
        render_top_down(
            path,
            truth.scene.points[keep],
            target=score.truth[keep],
            prediction=score.predicted[keep],
            relevant=score.relevant_truth[keep],
            title=(
                f"{entry['text']}  |  truth: {entry.get('truth_answer', '-')}  |  model: "
                f"{entry['answer'] or '-'} ({entry['status']})  |  IoU {entry['iou']:.2f}"
            ),
        )
        entry["render"] = str(path)
        report["renders"].append(str(path))
    markdown = out.with_suffix(".md")
    report["markdown"] = str(markdown)
    markdown.write_text(to_markdown(report, out))
    out.write_text(json.dumps(report, indent=2) + "\n")


def print_summary(report: dict[str, Any]) -> None:
    """Each instruction with its status, target, relevant elements, IoU and latency, then the
    metrics and where the files are."""
    console = Console(width=max(Console().width, 140))  # pipes and logs get 80 columns
    table = Table(title=f"R2S replay ({report['mode']}): {report['bag']}")
    for column in ("#", "instruction", "truth", "status", "target", "relevant", "IoU", "ms"):
        table.add_column(column, overflow="fold")
    for entry in report["instructions"]:
        relevant = ", ".join(element["name"] for element in entry["relevant"]) or "-"
        failed = entry["status"] in (ERROR, TIMEOUT)  # other statuses' reasons are just prose
        status = entry["status"] + (f" ({entry['error']})" if failed else "")
        points = entry["predicted_points"]
        target = f"{entry['answer'] or '-'}" + ("" if points is None else f" ({points} points)")
        table.add_row(
            str(entry["index"]),
            entry["text"],
            entry.get("truth_answer", "-"),
            status,
            target,
            relevant,
            number_text(entry.get("iou"), 2),
            number_text(entry["latency_ms"], 0),
        )
    console.print(table)
    latency = report["latency_ms"] or {}
    console.print(
        ", ".join(f"{label} {number_text(report.get(key))}" for key, label in HEADLINE.items())
    )
    console.print(
        f"latency p50 {number_text(latency.get('p50'), 0)} ms, "
        f"p95 {number_text(latency.get('p95'), 0)} ms;"
        f" statuses: {_pairs(report['statuses'])}"
    )
    console.print(f"report: {report['markdown']}")
    if report["renders"]:
        console.print(f"render: {report['renders'][0]} ({len(report['renders'])} in its folder)")


def to_markdown(report: dict[str, Any], out: Path) -> str:
    """A readable page: headline metrics, inputs, then one row per instruction."""
    lines = [f"# R2S replay ({report['mode']}): {report['bag']}", ""]
    lines += ["| metric | value |", "| --- | --- |"]
    for key, label in HEADLINE.items():
        lines.append(f"| {label} | {number_text(report.get(key))} |")
    latency = report["latency_ms"] or {}
    lines.append(f"| latency p50 / p95 | {number_text(latency.get('p50'), 0)} / "
                 f"{number_text(latency.get('p95'), 0)} ms |")  # fmt: skip
    lines.append(f"| instructions (scored) | {report['num_instructions']} "
                 f"({report['num_samples']}) |")  # fmt: skip
    lines.append(f"| statuses | {_pairs(report['statuses'])} |")
    lines.append(f"| inputs | {_pairs(report.get('inputs', {}))} |")
    lines += [
        "",
        "| # | instruction | truth | status | model answer | relevant | IoU | ms | render |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for entry in report["instructions"]:
        relevant = ", ".join(element["name"] for element in entry["relevant"]) or "-"
        render = entry.get("render")
        link = f"[png]({Path(render).relative_to(out.parent)})" if render else "-"
        status = entry["status"] + (f": {entry['error']}" if entry["error"] else "")
        cells = [
            str(entry["index"]),
            entry["text"],
            entry.get("truth_answer", "-"),
            status,
            entry["answer"] or "-",
            relevant,
            number_text(entry.get("iou")),
            number_text(entry["latency_ms"], 0),
            link,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _entry(
    outcome: Outcome, record: dict[str, Any] | None, score: InstructionScore | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": outcome.index,
        "stamp_ns": outcome.stamp_ns,
        "text": outcome.text,
        "status": outcome.status,
        "answer": outcome.answer,
        "error": outcome.error,
        "target_score": outcome.target_score,
        "predicted_points": None
        if outcome.predicted_points is None
        else len(outcome.predicted_points),
        "relevant": [
            {"name": e.name, "score": float(e.score), "points": len(e.points)}
            for e in outcome.relevant
        ],
        "latency_ms": outcome.latency_ms,
        "scene_points": outcome.scene.num_voxels,
        **outcome.extra,
    }
    if record is not None:
        entry |= {
            "sample_id": record["sample_id"],
            "category": record["category"],
            "truth_answer": record["answer"],
            "target_ids": record["target_ids"],
            "relevant_ids": record["relevant_ids"],
        }
    if score is not None:
        entry |= {
            "iou": score.result.iou,
            "observed_target_points": int(score.truth.sum()),
            "predicted_truth_points": int(score.predicted.sum()),
            "relevant_matched": score.result.relevant_tp,
        }
    return entry


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95)}


def number_text(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items()) or "-"
