"""r2s-eval end to end on a small generated split with a tiny random model."""

import json
from pathlib import Path

from r2s_model.checkpoint import save_checkpoint
from r2s_model.eval.evaluate import main
from tests.model.tiny import tiny_model

REQUIRED = {"miou", "acc25", "acc50", "no_target_acc", "num_samples", "per_category"}


def test_r2s_eval_writes_report_and_renders(small_dataset: Path, tmp_path: Path, capsys) -> None:
    checkpoint = save_checkpoint(tiny_model().eval(), tmp_path / "tiny")
    report_path = tmp_path / "out" / "report.json"
    main(
        [
            "--data", str(small_dataset), "--split", "val", "--checkpoint", str(checkpoint),
            "--out", str(report_path), "--renders", "1", "--device", "cpu",
        ]
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert set(report) >= REQUIRED
    num_records = len((small_dataset / "val.jsonl").read_text().splitlines())
    assert report["num_samples"] == num_records == len(report["samples"])
    questions = [json.loads(line)["question"] for line in (small_dataset / "val.jsonl").open()]
    assert [sample["question"] for sample in report["samples"]] == questions
    for sample in report["samples"]:  # what the model wrote, to read its mistakes by
        assert isinstance(sample["answer"], str) and isinstance(sample["relevant_names"], list)
    for value in (report["miou"], report["acc25"], report["acc50"]):
        assert 0.0 <= value <= 1.0
    assert report["acc50"] <= report["acc25"]
    for values in report["per_category"].values():
        assert {"miou", "acc25", "acc50", "num_samples"} <= set(values)
    assert sum(v["num_samples"] for v in report["per_category"].values()) == num_records
    assert len(report["renders"]) == 2
    for render in report["renders"]:
        assert Path(render).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mIoU" in capsys.readouterr().out
