"""The two-stage recipe end to end on a tiny random LLM and a few generated scenes: the answer
stage learns, r2s-cache-states caches its states (resumably), the grounding stage learns on
them, resumes exactly, runs under DDP, and exports a model that loads and answers."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch

from r2s_model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, read_weights
from r2s_model.data.io import SyntheticDataset
from r2s_model.model import SegmentationStatus
from r2s_model.objects.cache import ObjectCache, build_cache
from r2s_model.train.cli import r2s_task
from r2s_model.train.config import TrainConfig, load_train_config
from r2s_model.train.grounding import GroundingTask
from r2s_model.train.loop import Trainer
from r2s_model.train.model_init import build_model
from r2s_model.train.samples import asked_name
from r2s_model.train.states import build_state_cache, read_states, states_folder
from r2s_model.train.states import main as cache_states

SMOKE = Path(__file__).parents[2] / "configs" / "train" / "smoke.yaml"
SPLITS = ("train", "val")


@pytest.fixture(scope="module")
def data(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small benchmark (3 train scenes, 2 val) with its object cache (shipped parser)."""
    copy = tmp_path_factory.mktemp("recipe") / "data"
    shutil.copytree(small_dataset, copy)
    build_cache(copy)
    return copy


def smoke_config(data: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_train_config(SMOKE, [f"data.root={data}", f"out={out}", *overrides])


def grounding(answer_model: Path, *overrides: str) -> tuple[str, ...]:
    """The grounding stage's overrides of the smoke config."""
    return ("stage=grounding", f"init_from={answer_model}", "optim.steps=40", "optim.lr=3e-3",
            *overrides)  # fmt: skip


def train(config: TrainConfig) -> tuple[Trainer, dict]:
    trainer = Trainer(config, r2s_task(config), ["test"])
    return trainer, trainer.run()


def logged(out: Path, key: str) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if key in entry]


def mean_loss(entries: list[dict], name: str) -> float:
    return sum(entry["loss"][name] for entry in entries) / len(entries)


@pytest.fixture(scope="module")
def answer_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """The answer stage's run folder, its validation before training and its final summary."""
    out = tmp_path_factory.mktemp("answer") / "run"
    config = smoke_config(data, out)
    trainer = Trainer(config, r2s_task(config), ["test"])
    before = trainer.task.validate(trainer.model.eval(), config.eval.final_limit)
    return out, before, trainer.run()


@pytest.fixture(scope="module")
def states(answer_run, data: Path) -> Path:
    """r2s-cache-states on the answer stage's model, through its command line."""
    cache_states(["--checkpoint", str(answer_run[0] / "model"), "--data", str(data)])
    return states_folder(data, answer_run[0] / "model", ObjectCache(data))


@pytest.fixture(scope="module")
def grounding_run(answer_run, states: Path, data: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("grounding") / "run"
    return out, train(smoke_config(data, out, *grounding(answer_run[0] / "model")))[1]


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """The trainer sets torch's (process-wide) thread count; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_answer_stage_lowers_the_lm_loss(answer_run) -> None:
    out, before, after = answer_run
    losses = logged(out, "loss")
    assert len(losses) == 30 and set(losses[0]["loss"]) == {"total"}
    assert mean_loss(losses[-5:], "total") < 0.6 * mean_loss(losses[:5], "total")
    assert after["lm_loss"] < before["lm_loss"] - 2.0, (before, after)
    # Answers are short (a category, a colour only where the question states one): 30 steps of a
    # random 64-wide LLM get a few of their tokens right.
    assert after["answer_token_acc"] > before["answer_token_acc"] + 0.05
    assert after["num_samples"] == 12
    description = json.loads((out / "model" / CONFIG_FILE).read_text())
    metadata = description["metadata"]
    assert metadata["stage"] == "answer" and metadata["steps"] == 30
    assert metadata["val_metrics"]["lm_loss"] == pytest.approx(after["lm_loss"])
    assert (out / "curves.png").stat().st_size > 10_000


def test_cached_states_cover_every_sample_and_are_not_recomputed(
    answer_run, states: Path, data: Path
) -> None:
    hidden = load_checkpoint(answer_run[0] / "model").llm_bundle.hidden_size
    for split in SPLITS:
        dataset = SyntheticDataset(data, split)
        records = dataset.records
        cached = read_states(states, split)
        assert sorted(cached) == sorted(r["sample_id"] for r in records)
        for record in records:
            sample = cached[record["sample_id"]]
            # A no-target question with an asked name lists that name first (samples.ASKED).
            asked = not record["target_ids"] and asked_name(
                dataset.scene(record["scene_id"]), record
            )
            count = len(record["relevant_ids"]) + bool(asked)
            assert sample.relevant.shape == (min(count, 4), hidden)
            assert sample.two_stage.shape == sample.single_stage.shape == (hidden,)
            assert sample.relevant.dtype == torch.float16
        assert len(list((states / split).glob("*.pt"))) == len({r["scene_id"] for r in records})

    files = sorted(states.glob("*/*.pt"))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    removed = files[0]
    contents = torch.load(removed, weights_only=True)
    removed.unlink()
    assert build_state_cache(answer_run[0] / "model", data, SPLITS) == states
    assert {p: p.stat().st_mtime_ns for p in files if p != removed} == {
        p: t for p, t in stamps.items() if p != removed
    }  # the scenes already cached are skipped, the missing one is written again
    again = torch.load(removed, weights_only=True)
    assert again.keys() == contents.keys()
    for sample_id, values in contents.items():
        for name, value in values.items():
            torch.testing.assert_close(again[sample_id][name], value, atol=2e-3, rtol=0)


def test_states_of_other_weights_are_never_used(answer_run, states: Path, data: Path, tmp_path):
    """The state cache is keyed by the checkpoint's files: another model has none yet."""
    other = tmp_path / "other"
    shutil.copytree(answer_run[0] / "model", other)
    description = json.loads((other / CONFIG_FILE).read_text())
    description["metadata"]["steps"] = 31
    (other / CONFIG_FILE).write_text(json.dumps(description))
    config = smoke_config(data, tmp_path / "run", *grounding(other))
    with pytest.raises(FileNotFoundError, match="run r2s-cache-states --checkpoint"):
        GroundingTask(config)


def test_train_scenes_keeps_the_first_scenes_of_the_split(answer_run, states, data, tmp_path):
    overrides = grounding(answer_run[0] / "model", "data.train_scenes=2")
    task = GroundingTask(smoke_config(data, tmp_path / "run", *overrides))
    scenes = sorted({record["scene_id"] for record in SyntheticDataset(data, "train").records})
    assert len(scenes) == 3
    assert {sample.scene_id for sample in task.train_samples} == set(scenes[:2])
    assert set(task.train_objects) == set(scenes[:2]) and task.val_samples


def test_the_grounding_stage_starts_from_its_parser_and_a_fresh_head(
    answer_run, data: Path, tmp_path: Path
) -> None:
    """The answer stage's checkpoint gives the LLM's trainable state; the parser is the one the
    object cache was made with (`parser`), and the head starts fresh: an answer checkpoint
    holding another parser or another head changes neither."""
    altered = tmp_path / "answer"
    shutil.copytree(answer_run[0] / "model", altered)
    state = read_weights(altered)
    for name in state:
        if name.startswith(("parser.", "grounding.")) and state[name].is_floating_point():
            state[name] = state[name] + 1.0
    safetensors.torch.save_file(state, altered / WEIGHTS_FILE)
    built = {}
    for source in (altered, answer_run[0] / "model"):
        torch.manual_seed(0)  # the same fresh head
        config = smoke_config(data, tmp_path / "run", *grounding(source))
        built[source] = build_model(config).trainable_state()
    for name, tensor in built[altered].items():
        if name.startswith(("parser.", "grounding.")):
            assert torch.equal(tensor, built[answer_run[0] / "model"][name]), name
            assert not tensor.is_floating_point() or not torch.equal(tensor, state[name]), name
        else:
            assert torch.equal(tensor, state[name].to(tensor.dtype)), name


def test_the_grounding_stage_lowers_its_loss(grounding_run) -> None:
    out, summary = grounding_run
    losses = logged(out, "loss")
    assert len(losses) == 40 and set(losses[0]["loss"]) == {"total", "relevant", "target"}
    for name in ("total", "relevant", "target"):
        assert mean_loss(losses[-10:], name) < 0.8 * mean_loss(losses[:5], name), name
    assert summary["num_samples"] == 12
    for key in ("miou", "acc50", "relevant_recall"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert json.loads((out / "metrics.json").read_text())["miou"] == pytest.approx(summary["miou"])


def test_single_stage_grounding_trains_the_target_alone(answer_run, states, data, tmp_path):
    out = tmp_path / "single"
    overrides = grounding(answer_run[0] / "model", "model.mode=single_stage", "optim.steps=20")
    _, summary = train(smoke_config(data, out, *overrides))
    losses = logged(out, "loss")
    assert all(entry["loss"]["relevant"] == 0.0 for entry in losses)
    assert mean_loss(losses[-5:], "target") < 0.8 * mean_loss(losses[:5], "target")
    assert summary["relevant_recall"] is None  # no stage 1 to score


def test_the_exported_model_loads_and_answers(answer_run, grounding_run, data: Path) -> None:
    """The grounding stage exports the whole model: its trained head, the answer stage's LLM
    weights and the parser unchanged; it loads and answers like any checkpoint."""
    out, _ = grounding_run
    answer, final = read_weights(answer_run[0] / "model"), read_weights(out / "model")
    assert answer.keys() == final.keys()
    for key, value in final.items():
        same = torch.equal(value, answer[key])
        assert same != key.startswith("grounding.") or value.dtype == torch.long, key
    model = load_checkpoint(out / "model")
    assert json.loads((out / "model" / CONFIG_FILE).read_text())["metadata"]["stage"] == "grounding"
    dataset = SyntheticDataset(data, "val")
    record = dataset.records[0]
    scene = dataset.scene(record["scene_id"])
    output = model.segment(model.encode_scene(scene.points, scene.colors), record["question"])
    assert output.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert output.target_mask.shape == (len(scene.points),)
    assert output.generated_tokens > 0


def test_an_interrupted_run_resumes_to_the_same_weights(
    answer_run, states: Path, data: Path, tmp_path: Path, restore_threads: None
) -> None:
    # One thread: multi-threaded CPU kernels sum in varying order (last-bit differences).
    overrides = grounding(answer_run[0] / "model", "optim.steps=6", "save_every=2", "threads=1")
    train(smoke_config(data, tmp_path / "straight", *overrides))
    stopped, summary = train(smoke_config(data, tmp_path / "resumed", *overrides, "stop_after=3"))
    assert summary == {} and stopped.step == 3
    assert not (tmp_path / "resumed" / "model").exists()
    resumed, _ = train(smoke_config(data, tmp_path / "resumed", *overrides))
    assert resumed.step == 6

    straight = safetensors.torch.load_file(tmp_path / "straight" / "model" / "model.safetensors")
    again = safetensors.torch.load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert straight.keys() == again.keys()
    for name, value in straight.items():
        assert torch.equal(value, again[name]), name
    steps = [entry["step"] for entry in logged(tmp_path / "resumed", "loss")]
    assert steps == list(range(1, 7))  # no step logged twice, none missing


def test_two_gloo_ranks_under_torchrun_end_with_the_same_weights(
    answer_run, states: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    overrides = grounding(answer_run[0] / "model", "optim.steps=4", "save_every=2", "threads=1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "r2s_model.train.cli", "--config", str(SMOKE), "--set", f"data.root={data}",
        f"out={out}", "eval.final_limit=2", *overrides,
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=environment, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    (replicas,) = logged(out, "replicas")
    assert replicas["replicas"] == {"world_size": 2, "agree": True, "max_gap": 0.0}
    resume = torch.load(out / "resume.pt", weights_only=True)
    assert resume["step"] == 4 and resume["world_size"] == 2
    assert len(resume["torch_rng"]) == 2  # each rank's augmentation RNG, to resume exactly
    assert not torch.equal(*resume["torch_rng"])
    description = json.loads((out / "model" / CONFIG_FILE).read_text())
    assert description["metadata"]["world_size"] == 2
    # The ranks agree on weights that training actually changed.
    initial = read_weights(answer_run[0] / "model")
    trained = read_weights(out / "model")
    head = [k for k, v in trained.items() if k.startswith("grounding.")]
    changed = [k for k in head if not torch.equal(trained[k], initial[k])]
    assert len(changed) > 0.9 * len(head)
