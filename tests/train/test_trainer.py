"""r2s-train end to end on a tiny model: it learns, it resumes exactly, it runs under DDP."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch

from r2s_model.eval.evaluate import evaluate
from r2s_model.eval.metrics import summarize
from r2s_model.model import R2SModel
from r2s_model.synthetic.generate import generate_dataset
from r2s_model.train.config import TrainConfig, load_train_config
from r2s_model.train.trainer import r2s_trainer

SMOKE = Path(__file__).parents[2] / "configs" / "train" / "smoke.yaml"


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training scene with two instructions: the smoke run must fit them."""
    out = tmp_path_factory.mktemp("smoke") / "data"
    scenes = {"train": 1, "val": 1}
    generate_dataset(
        out, seed=11, scenes=scenes, samples_per_scene=2, points_per_m2=600.0, workers=1
    )
    return out


def smoke_config(data: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_train_config(
        SMOKE, [f"data.root={data}", "data.val_split=train", f"out={out}", *overrides]
    )


def logged(out: Path, key: str) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if key in entry]


def test_smoke_training_lowers_the_loss_and_raises_the_iou(one_scene: Path, tmp_path: Path) -> None:
    trainer = r2s_trainer(smoke_config(one_scene, tmp_path / "run"))
    before = summarize(evaluate(trainer.model.eval(), trainer.task.val_set)[0])
    after = trainer.run()

    losses = [entry["loss"] for entry in logged(tmp_path / "run", "loss")]
    assert len(losses) == trainer.config.optim.steps
    first, last = losses[:5], losses[-5:]
    for name in ("total", "lm_stage1", "lm_stage2", "target_total", "relevant_total"):
        start = sum(loss[name] for loss in first) / 5
        end = sum(loss[name] for loss in last) / 5
        assert end < 0.8 * start, (name, start, end)
    assert after["miou"] > before["miou"] + 0.1, (before["miou"], after["miou"])
    # The exported model, its metrics and curves are there, and the model loads back.
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["miou"] == pytest.approx(after["miou"])
    assert (run / "curves.png").stat().st_size > 10_000
    description = json.loads((run / "model" / "config.json").read_text())
    assert description["metadata"]["val_metrics"]["miou"] == pytest.approx(after["miou"])
    assert description["metadata"]["train_config"]["optim"]["steps"] == 40


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """The trainer sets torch's (process-wide) thread count; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_an_interrupted_run_resumes_to_the_same_weights(
    one_scene: Path, tmp_path: Path, restore_threads: None
) -> None:
    # One thread: multi-threaded CPU kernels sum in varying order (last-bit differences).
    overrides = ("optim.steps=6", "save_every=2", "eval.final_limit=1", "threads=1")
    r2s_trainer(smoke_config(one_scene, tmp_path / "straight", *overrides)).run()
    stopped = r2s_trainer(smoke_config(one_scene, tmp_path / "resumed", *overrides, "stop_after=3"))
    assert stopped.run() == {} and stopped.step == 3
    assert not (tmp_path / "resumed" / "model").exists()
    resumed = r2s_trainer(smoke_config(one_scene, tmp_path / "resumed", *overrides))
    assert resumed.step == 3
    resumed.run()

    straight = safetensors.torch.load_file(tmp_path / "straight" / "model" / "model.safetensors")
    again = safetensors.torch.load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert straight.keys() == again.keys()
    for name, value in straight.items():
        assert torch.equal(value, again[name]), name
    steps = [entry["step"] for entry in logged(tmp_path / "resumed", "loss")]
    assert steps == list(range(1, 7))  # no step logged twice, none missing


def test_two_gloo_ranks_under_torchrun_end_with_the_same_weights(
    one_scene: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "r2s_model.train.cli", "--config", str(SMOKE), "--set", f"data.root={one_scene}",
        "data.val_split=train", f"out={out}", "optim.steps=4", "eval.final_limit=1", "threads=1",
        "save_every=2",
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=environment, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    (replicas,) = logged(out, "replicas")
    resume = torch.load(out / "resume.pt", weights_only=True)
    assert resume["step"] == 4 and resume["world_size"] == 2
    assert len(resume["torch_rng"]) == 2  # each rank's augmentation RNG, to resume exactly
    assert not torch.equal(*resume["torch_rng"])
    assert replicas["replicas"] == {"world_size": 2, "agree": True, "max_gap": 0.0}
    description = json.loads((out / "model" / "config.json").read_text())
    assert description["metadata"]["world_size"] == 2
    # The ranks agree on weights that training actually changed.
    config = smoke_config(one_scene, out)
    torch.manual_seed(config.seed)
    initial = R2SModel.build(config.model).trainable_state()
    trained = safetensors.torch.load_file(out / "model" / "model.safetensors")
    changed = [k for k, v in trained.items() if not torch.equal(v, initial[k])]
    assert len(changed) > 0.9 * len(trained)
