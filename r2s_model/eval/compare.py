"""Compare trained runs (the R²S vs single-stage ablation): a Markdown table and a PNG.

    python -m r2s_model.eval.compare --run two_stage=out/eval-two_stage.json \\
        --run single_stage=out/eval-single_stage.json --out docs/ablation

Each run is an r2s-eval report (JSON) or a training run's folder (its `metrics.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLUMNS = (("miou", "mIoU"), ("acc25", "Acc@0.25"), ("acc50", "Acc@0.5"))


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def ablation_table(runs: dict[str, dict[str, Any]]) -> str:
    """Markdown: overall metrics per run, then mIoU / Acc@0.5 per reasoning category."""
    lines = [
        "| run | samples | mIoU | Acc@0.25 | Acc@0.5 | no-target acc | relevant recall "
        "| relevant precision | latency p50 / p95 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, summary in runs.items():
        latency = summary.get("latency_ms") or {}
        cells = [_number(summary.get(key)) for key, _ in COLUMNS]
        lines.append(
            f"| {name} | {summary['num_samples']} | {' | '.join(cells)} "
            f"| {_number(summary.get('no_target_acc'))} "
            f"| {_number(summary.get('relevant_recall'))} "
            f"| {_number(summary.get('relevant_precision'))} "
            f"| {latency.get('p50', 0):.0f} / {latency.get('p95', 0):.0f} |"
        )
    categories = sorted({c for s in runs.values() for c in s.get("per_category", {})})
    lines += ["", "| category | " + " | ".join(f"{n} mIoU / Acc@0.5" for n in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for category in categories:
        cells = []
        for summary in runs.values():
            values = summary.get("per_category", {}).get(category)
            cells.append(
                "–"
                if values is None
                else f"{_number(values['miou'])} / {_number(values['acc50'])} "
                f"(n={values['num_samples']})"
            )
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ablation_plot(runs: dict[str, dict[str, Any]], out: Path) -> Path:
    """Grouped bars: mIoU overall and per category, one bar per run."""
    categories = sorted({c for s in runs.values() for c in s.get("per_category", {})})
    groups = ["all", *categories]
    width = 0.8 / len(runs)
    figure, axis = plt.subplots(figsize=(max(8, 1.1 * len(groups)), 4.5))
    for index, (name, summary) in enumerate(runs.items()):
        values = [summary["miou"]] + [
            (summary.get("per_category", {}).get(c) or {}).get("miou") or 0.0 for c in categories
        ]
        axis.bar(np.arange(len(groups)) + index * width, values, width, label=name)
    axis.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right")
    axis.set(ylabel="mIoU (val)", ylim=(0, 1), title="R²S two-stage vs single-stage")
    axis.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--out", type=Path, default=Path("ablation"))
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, _, given = spec.partition("=")
        path = Path(given) / "metrics.json" if Path(given).is_dir() else Path(given)
        if not name or not path.is_file():
            parser.error(f"--run {spec!r}: expected NAME=REPORT.json or NAME=RUN_FOLDER")
        runs[name] = json.loads(path.read_text())
    table = ablation_table(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(table)
    plot = ablation_plot(runs, args.out / "ablation.png")
    print(table)
    print(f"table: {args.out / 'ablation.md'}  plot: {plot}")


if __name__ == "__main__":
    main()
