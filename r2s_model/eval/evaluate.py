"""r2s-eval: evaluate a checkpoint on a split of the synthetic benchmark.

    r2s-eval --data data/r2s --split val [--checkpoint PATH] --out report.json
    r2s-eval --task scene --data data/r2s --split val [--parser PATH] --out scene.json

The referring task (default) runs the same inference path as the node (superpoints, encoder,
both stages) once per scene and per instruction, scores every sample (r2s_model/eval/metrics.py),
prints a table, writes the JSON report and top-down renders of the best and worst samples next
to it. The scene task scores the scene parser's categories and object proposals
(r2s_model/eval/scene_eval.py).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from r2s_model.data.io import SyntheticDataset
from r2s_model.device import DeviceError, resolve_device
from r2s_model.eval.metrics import SampleResult, score_sample, summarize
from r2s_model.eval.render import render_top_down
from r2s_model.eval.scene_eval import run_scene_task
from r2s_model.model import R2SModel
from r2s_model.objects.checkpoint import DEFAULT_PARSER, load_parser


def evaluate(
    model: R2SModel, dataset: SyntheticDataset, *, limit: int | None = None
) -> tuple[list[SampleResult], dict[str, dict[str, Any]]]:
    """Scores the first `limit` samples -> per-sample results and, per sample id, what a render
    needs (its record, the model's answer and its predicted point indices: full masks for
    thousands of samples would not fit in memory)."""
    by_scene: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in dataset.records[:limit]:
        by_scene[record["scene_id"]].append(record)
    results: list[SampleResult] = []
    details: dict[str, dict[str, Any]] = {}
    progress = tqdm(total=sum(len(r) for r in by_scene.values()), desc="evaluating", unit="sample")
    for scene_id, records in by_scene.items():
        scene = dataset.scene(scene_id)
        start = time.perf_counter()
        encoded = model.encode_scene(scene.points, scene.colors)
        encode_ms = (time.perf_counter() - start) * 1000
        for record in records:
            start = time.perf_counter()
            output = model.segment(encoded, record["question"])
            latency = (time.perf_counter() - start) * 1000 + encode_ms
            encode_ms = 0.0  # the scene encoding is paid once, by the scene's first sample
            truth = np.isin(scene.instance, record["target_ids"])
            relevant_truth = [scene.instance == i for i in record["relevant_ids"]]
            results.append(
                score_sample(
                    record["sample_id"],
                    record["category"],
                    output.target_mask,
                    truth,
                    target_score=output.target_score,
                    relevant_predicted=[element.mask for element in output.relevant],
                    relevant_truth=relevant_truth,
                    latency_ms=latency,
                )
            )
            details[record["sample_id"]] = {
                "record": record,
                "predicted_answer": output.answer,
                "relevant_names": [element.name for element in output.relevant],
                "status": output.status.value,
                "prediction": np.flatnonzero(output.target_mask),
            }
            progress.update()
    progress.close()
    return results, details


def write_renders(
    folder: Path,
    dataset: SyntheticDataset,
    results: list[SampleResult],
    details: dict[str, dict[str, Any]],
    count: int,
) -> list[str]:
    """Renders the `count` worst and `count` best samples by IoU; returns the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    ranked = sorted(results, key=lambda r: (r.iou, r.sample_id))
    chosen = {("worst", r.sample_id): r for r in ranked[:count]}
    chosen |= {("best", r.sample_id): r for r in ranked[::-1][:count]}
    paths = []
    for (kind, sample_id), result in chosen.items():
        info = details[sample_id]
        record = info["record"]
        scene = dataset.scene(record["scene_id"])
        prediction = np.zeros(len(scene.points), dtype=bool)
        prediction[info["prediction"]] = True
        title = (
            f"[{kind}] {record['question']}  |  truth: {record['answer']}  |  model: "
            f"{info['predicted_answer'] or '-'} ({info['status']})  |  IoU {result.iou:.2f}"
        )
        path = render_top_down(
            folder / f"{kind}_{sample_id}.png",
            scene.points,
            target=np.isin(scene.instance, record["target_ids"]),
            prediction=prediction,
            relevant=np.isin(scene.instance, record["relevant_ids"]),
            title=title,
        )
        paths.append(str(path))
    return paths


def print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"R2S evaluation ({summary['num_samples']} samples)")
    for column in ("category", "samples", "mIoU", "Acc@0.25", "Acc@0.5"):
        table.add_column(column, justify="right" if column != "category" else "left")
    rows = [("all", summary), *sorted(summary["per_category"].items())]
    for name, values in rows:
        table.add_row(
            name,
            str(values["num_samples"]),
            *(f"{values[key]:.3f}" for key in ("miou", "acc25", "acc50")),
        )
    console.print(table)
    extras = {k: summary.get(k) for k in ("no_target_acc", "relevant_recall", "relevant_precision")}
    console.print({k: v if v is None else round(v, 3) for k, v in extras.items()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r2s-eval", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task",
        choices=("referring", "scene"),
        default="referring",
        help="referring: instructions (default); scene: categories and object proposals",
    )
    parser.add_argument("--data", type=Path, required=True, help="a folder from r2s-gen-data")
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="default: the shipped model"
    )
    parser.add_argument(
        "--parser", type=Path, default=DEFAULT_PARSER, help="scene task: the parser's weights"
    )
    parser.add_argument("--out", type=Path, default=Path("report.json"))
    parser.add_argument(
        "--limit", type=int, default=None, help="evaluate the first N samples (scenes: N scenes)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--renders", type=int, default=3, help="best and worst samples to render")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(str(error))
    if args.task == "scene":
        try:
            scene_parser = load_parser(args.parser, device)
        except CheckpointError as error:
            parser.error(str(error))
        run_scene_task(scene_parser, args.data, args.split, args.out, args.limit)
        return

    if not (args.checkpoint / "config.json").is_file() and args.checkpoint == DEFAULT_CHECKPOINT:
        parser.error(f"no shipped model at {DEFAULT_CHECKPOINT}; pass --checkpoint PATH")
    dataset = SyntheticDataset(args.data, args.split)
    model = load_checkpoint(args.checkpoint, device=device)
    results, details = evaluate(model, dataset, limit=args.limit)
    summary = summarize(results)
    render_folder = args.out.with_name(args.out.stem + "_renders")
    summary["renders"] = write_renders(render_folder, dataset, results, details, args.renders)
    summary["checkpoint"] = str(args.checkpoint)
    summary["score_threshold"] = model.config.score_threshold
    summary["data"] = {"root": str(args.data), "split": args.split}
    summary["samples"] = [
        {
            **vars(result),
            "question": details[result.sample_id]["record"]["question"],
            "answer": details[result.sample_id]["predicted_answer"],
            "relevant_names": details[result.sample_id]["relevant_names"],
        }
        for result in results
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    console = Console()
    print_summary(summary, console)
    console.print(f"report: {args.out}  renders: {render_folder}")


if __name__ == "__main__":
    main()
