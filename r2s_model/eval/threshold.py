"""Chooses a checkpoint's no-target score threshold from an end-to-end validation report.

    python -m r2s_model.eval.threshold --report out/eval/val.json [--min-no-target 0.8] [--z 1]
    python -m r2s_model.eval.threshold --report out/eval/test.json --at 0.55 --out test_055.json

The grounding stage's export sweeps thresholds on cached gold-answer states, where a no-target
question's [SEG] state names what the data wrote; end to end the LLM names what it believes, and
the head is then surer of a wrong object. An `r2s-eval` report on a validation split holds every
sample's target score, so each threshold at or above the one it ran with is scored exactly (a
target below that one was already answered "no target"). Chosen: the threshold with the best
mIoU among those whose no-target accuracy reaches `--min-no-target` with `--z` standard errors
to spare (the Wilson lower bound: a hundred no-target questions measure 0.8 to within about
0.04, and the floor is meant to hold on scenes the split does not have); if none does, the one
with the best bound. It is written to the report's checkpoint (`config.json`), with the sweep
under `metadata.score_threshold_calibration`. With `--at`, the report is instead rewritten
as if it had run at that threshold (to score another split at the chosen one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from r2s_model.eval.calibrate import record_choice
from r2s_model.eval.metrics import SampleResult, summarize

ROW_KEYS = ("miou", "acc50", "no_target_acc")
CANDIDATES = tuple(round(0.05 * step, 2) for step in range(2, 20))


def wilson_lower(accuracy: float, count: int, z: float) -> float:
    """The Wilson score interval's lower end for `accuracy` measured on `count` samples, `z`
    standard errors below (the accuracy itself for z = 0; 0 without samples)."""
    if count == 0:
        return 0.0
    spread = z * math.sqrt(accuracy * (1 - accuracy) / count + z**2 / (4 * count**2))
    return (accuracy + z**2 / (2 * count) - spread) / (1 + z**2 / count)


def rescored(samples: list[dict[str, Any]], threshold: float) -> list[SampleResult]:
    """A report's samples as they would have scored had targets below `threshold` been
    answered "no target" (exact for a threshold at or above the one the report ran with)."""
    fields = [field.name for field in dataclasses.fields(SampleResult)]
    results = []
    for sample in samples:
        empty = sample["predicted_empty"] or sample["target_score"] < threshold
        iou = float(sample["is_no_target"]) if empty else sample["iou"]
        kept = {name: sample[name] for name in fields if name in sample}
        results.append(SampleResult(**{**kept, "iou": iou, "predicted_empty": empty}))
    return results


def rescore(samples: list[dict[str, Any]], threshold: float, z: float = 0.0) -> dict[str, float]:
    """mIoU, Acc@0.5 and no-target accuracy (`metrics.summarize`) of the `rescored` samples,
    and the no-target accuracy's `wilson_lower` bound."""
    results = rescored(samples, threshold)
    summary = summarize(results)
    count = sum(result.is_no_target for result in results)
    lower = wilson_lower(summary["no_target_acc"] or 0.0, count, z)
    return {"score_threshold": threshold, **{key: summary[key] for key in ROW_KEYS},
            "no_target_count": count, "no_target_lower": lower}  # fmt: skip


def report_at(report: dict[str, Any], threshold: float) -> dict[str, Any]:
    """`report` as `r2s-eval` would have written it at `threshold` (no renders)."""
    floor = ran_with(report)
    if threshold < floor:
        raise ValueError(f"the report ran at {floor}: it cannot score {threshold}")
    results = rescored(report["samples"], threshold)
    samples = [
        {**sample, "iou": result.iou, "predicted_empty": result.predicted_empty}
        for sample, result in zip(report["samples"], results, strict=True)
    ]
    return {**report, **summarize(results), "renders": [], "score_threshold": threshold,
            "rescored_from": floor, "samples": samples}  # fmt: skip


def choose(rows: list[dict[str, float]], min_no_target: float) -> dict[str, float]:
    """The best-mIoU row whose no-target bound reaches `min_no_target`, else the best bound."""
    meeting = [row for row in rows if row["no_target_lower"] >= min_no_target]
    if meeting:
        return max(meeting, key=lambda row: (row["miou"], -row["score_threshold"]))
    return max(rows, key=lambda row: (row["no_target_lower"], row["miou"]))


def ran_with(report: dict[str, Any]) -> float:
    """The threshold the report's run used (reports before it was recorded: its checkpoint's)."""
    if "score_threshold" in report:
        return float(report["score_threshold"])
    config = json.loads((Path(report["checkpoint"]) / "config.json").read_text())
    return float(config["config"]["score_threshold"])


def main(argv: list[str] | None = None) -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument(
        "--report", type=Path, required=True, help="r2s-eval's JSON, a val split"
    )
    arguments.add_argument("--min-no-target", type=float, default=0.8)
    arguments.add_argument(
        "--z", type=float, default=1.0, help="standard errors the no-target floor must clear"
    )
    arguments.add_argument(
        "--at", type=float, help="write --report rescored at this threshold to --out instead"
    )
    arguments.add_argument("--out", type=Path, help="where --at writes its report")
    args = arguments.parse_args(argv)
    report = json.loads(args.report.read_text())
    if args.at is not None:
        if args.out is None:
            arguments.error("--at needs --out")
        args.out.write_text(json.dumps(report_at(report, args.at), indent=2) + "\n")
        return
    floor = ran_with(report)
    candidates = sorted({floor, *(c for c in CANDIDATES if c > floor)})
    rows = [rescore(report["samples"], threshold, args.z) for threshold in candidates]
    best = choose(rows, args.min_no_target)
    sweep = {
        "report": str(args.report), "data": report["data"], "min_no_target": args.min_no_target,
        "z": args.z, "rows": rows,
    }  # fmt: skip
    path = Path(report["checkpoint"]) / "config.json"
    record_choice(path, ("config", "score_threshold"), best, "score_threshold_calibration", sweep)


if __name__ == "__main__":
    main()
