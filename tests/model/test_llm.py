"""The LLM wrapper: special tokens, KV-prefix reuse, training modes, adapter state and loading.

Most tests use the tiny random Llama (real SmolLM2 tokenizer); the `slow` ones load the real
packaged SmolLM2 GGUF through the conversion cache.
"""

import copy
import filecmp
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from torch import Tensor

from r2s_model.llm import (
    SPECIAL_TOKENS,
    LLMBundle,
    LLMSourceError,
    build_tiny_llm,
    load_llm,
    load_trainable_state_dict,
    set_training_mode,
    trainable_parameters,
    trainable_state_dict,
    weights_sha256,
)
from r2s_model.llm_cache import conversion_folder, packaged_gguf

PROMPT = "find the [REL] chair near the [REL] bed, then the [SEG] lamp <scene><scene><prior>"
OTHER_SUFFIX = " and what about the [SEG] window"


def _ids(bundle: LLMBundle, text: str) -> Tensor:
    """(1, L) token ids of `text` without BOS/EOS."""
    return torch.tensor([bundle.tokenizer(text, add_special_tokens=False)["input_ids"]])


def _embedding_table(bundle: LLMBundle) -> Tensor:
    """(V, H) every input embedding row, read through the public embedding module."""
    vocabulary = torch.arange(len(bundle.tokenizer))
    return bundle.model.get_input_embeddings()(vocabulary).detach().clone()


def _head_table(bundle: LLMBundle) -> Tensor:
    """(V, H) every output projection row, read by applying the LM head to the identity."""
    identity = torch.eye(bundle.hidden_size)
    return bundle.model.get_output_embeddings()(identity).detach().T.clone()


def _train(bundle: LLMBundle, steps: int = 3) -> None:
    """A few AdamW steps (with weight decay) of next-token loss on PROMPT, fed as inputs_embeds."""
    model = bundle.model
    model.train()
    optimizer = torch.optim.AdamW(trainable_parameters(bundle), lr=1e-2, weight_decay=0.1)
    ids = _ids(bundle, PROMPT)
    for _ in range(steps):
        embeds = model.get_input_embeddings()(ids)
        model(inputs_embeds=embeds, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _logits(bundle: LLMBundle, text: str = PROMPT) -> Tensor:
    with torch.no_grad():
        embeds = bundle.model.get_input_embeddings()(_ids(bundle, text))
        return bundle.model(inputs_embeds=embeds).logits


def test_special_tokens_are_distinct_single_tokens_after_the_vocabulary() -> None:
    bundle = build_tiny_llm()
    tokenizer, ids = bundle.tokenizer, bundle.token_ids
    assert list(ids) == list(SPECIAL_TOKENS)
    assert sorted(ids.values()) == list(range(len(tokenizer) - len(SPECIAL_TOKENS), len(tokenizer)))
    for token in ("[REL]", "[SEG]"):
        text = f"the lamp {token} near the bed{token}"
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert encoded.count(ids[token]) == 2
        assert tokenizer.convert_ids_to_tokens(ids[token]) == token
        assert tokenizer.decode(encoded) == text
    table = _embedding_table(bundle)
    assert table.shape == (len(tokenizer), bundle.hidden_size) == (len(tokenizer), 64)
    # New rows start near the mean row, and differ from each other.
    mean = table[: min(ids.values())].mean(0)
    special = table[min(ids.values()) :]
    assert torch.allclose(special, mean.expand_as(special), atol=0.1 * table.std().item())
    assert torch.unique(special, dim=0).shape[0] == len(SPECIAL_TOKENS)


def test_tiny_llm_is_reproducible_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first, again, other = build_tiny_llm(seed=0), build_tiny_llm(seed=0), build_tiny_llm(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.weights_sha256 == again.weights_sha256 != other.weights_sha256
    assert torch.equal(_logits(first), _logits(again))
    assert not torch.equal(_logits(first), _logits(other))


@pytest.mark.parametrize("mode", [None, "frozen", "lora", "full"])
def test_kv_prefix_reuse_matches_full_forward(mode: str | None) -> None:
    """A cached prefix, deep-copied per continuation, gives the logits of full forwards."""
    bundle = build_tiny_llm()
    if mode is not None:
        set_training_mode(bundle, mode)
    model = bundle.model.eval()
    embed = model.get_input_embeddings()
    prefix_ids = _ids(bundle, PROMPT)
    with torch.no_grad():
        prefix = model(inputs_embeds=embed(prefix_ids), use_cache=True)
        assert torch.allclose(prefix.logits, _logits(bundle), atol=1e-5)
        for suffix in (" [SEG]", OTHER_SUFFIX):
            suffix_ids = _ids(bundle, suffix)
            full = model(inputs_embeds=embed(torch.cat([prefix_ids, suffix_ids], 1))).logits
            cache = copy.deepcopy(prefix.past_key_values)
            continued = model(inputs_embeds=embed(suffix_ids), past_key_values=cache).logits
            assert continued.shape == (1, suffix_ids.shape[1], len(bundle.tokenizer))
            torch.testing.assert_close(continued, full[:, prefix_ids.shape[1] :])


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_training_moves_only_special_rows_and_adapters(mode: str) -> None:
    bundle = set_training_mode(build_tiny_llm(), mode)
    model = bundle.model
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    embeddings, head = _embedding_table(bundle), _head_table(bundle)
    assert any("q_proj" in name for name in frozen)
    assert any("lora_" in name for name in trained) == (mode == "lora")

    _train(bundle)

    num_original = min(bundle.token_ids.values())
    for before, after in ((embeddings, _embedding_table(bundle)), (head, _head_table(bundle))):
        assert torch.equal(after[:num_original], before[:num_original])
        assert (after[num_original:] != before[num_original:]).any(1).all()
    parameters = dict(model.named_parameters())
    assert [n for n, p in frozen.items() if not torch.equal(parameters[n], p)] == []
    assert [n for n, p in trained.items() if torch.equal(parameters[n], p)] == []


def test_full_mode_trains_everything_and_modes_are_set_once() -> None:
    bundle = set_training_mode(build_tiny_llm(), "full")
    assert len(trainable_parameters(bundle)) == len(list(bundle.model.parameters()))
    embeddings = _embedding_table(bundle)
    _train(bundle)
    assert not torch.equal(_embedding_table(bundle)[:100], embeddings[:100])
    with pytest.raises(ValueError, match="already 'full'"):
        set_training_mode(bundle, "lora")
    with pytest.raises(ValueError, match="Unknown training mode"):
        set_training_mode(build_tiny_llm(), "partial")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_trainable_state_round_trip_restores_outputs(mode: str) -> None:
    trained = set_training_mode(build_tiny_llm(seed=3), mode)
    _train(trained)
    state = trainable_state_dict(trained)
    assert all(t.device.type == "cpu" for t in state.values())
    if mode != "full":
        assert all("special_rows" in name or "lora_" in name for name in state)

    fresh = set_training_mode(build_tiny_llm(seed=3), mode)
    fresh.model.eval()
    assert not torch.equal(_logits(fresh), _logits(trained))
    load_trainable_state_dict(fresh, state)
    assert torch.equal(_logits(fresh), _logits(trained))


def test_load_trainable_state_dict_rejects_mismatches_without_loading() -> None:
    bundle = set_training_mode(build_tiny_llm(), "lora")
    state = trainable_state_dict(bundle)
    rows_key = next(name for name in state if name.endswith("special_rows"))
    reference = _logits(bundle)

    missing = {k: v for k, v in state.items() if k != rows_key}
    with pytest.raises(ValueError, match=r"missing \(1\): .*special_rows"):
        load_trainable_state_dict(bundle, missing)
    with pytest.raises(ValueError, match=r"unexpected \(1\): bogus\.weight"):
        load_trainable_state_dict(bundle, {**state, "bogus.weight": torch.zeros(1)})
    reshaped = {k: v + 1 for k, v in state.items()}
    reshaped[rows_key] = torch.zeros(len(SPECIAL_TOKENS) + 1, bundle.hidden_size)
    count = len(SPECIAL_TOKENS)
    with pytest.raises(
        ValueError, match=rf"shape mismatch.*\({count + 1}, 64\) vs model \({count}, 64\)"
    ):
        load_trainable_state_dict(bundle, reshaped)
    frozen_state = trainable_state_dict(set_training_mode(build_tiny_llm(), "frozen"))
    with pytest.raises(ValueError, match=r"training mode 'lora'.*missing.*lora_A.*unexpected"):
        load_trainable_state_dict(bundle, frozen_state)
    assert torch.equal(_logits(bundle), reference)


def _save_base_folder(bundle: LLMBundle, folder: Path) -> None:
    """A Hugging Face folder: the tiny model's weights plus the base (unextended) tokenizer."""
    bundle.model.save_pretrained(folder)
    for file in conversion_folder(packaged_gguf(), "tokenizer").iterdir():
        shutil.copy(file, folder)


def test_load_llm_from_a_local_folder_and_a_corrupt_one(tmp_path: Path) -> None:
    tiny = build_tiny_llm()
    folder = tmp_path / "tiny"
    _save_base_folder(tiny, folder)
    loaded = load_llm(str(folder))
    assert loaded.source == str(folder.resolve())
    assert loaded.weights_sha256 == weights_sha256(folder)
    assert loaded.token_ids == tiny.token_ids
    # The saved model has the special rows as padding past the base vocabulary; they are redone.
    num_original = min(tiny.token_ids.values())
    assert torch.equal(_embedding_table(loaded), _embedding_table(tiny))
    assert len(loaded.tokenizer) == num_original + len(SPECIAL_TOKENS)

    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert weights_sha256(folder) != loaded.weights_sha256
    with pytest.raises(LLMSourceError, match=f"Could not load .* from {folder}.*SafetensorError"):
        load_llm(str(folder))


def test_unknown_or_missing_sources_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LLMSourceError) as error:
        load_llm("r2s-tests/no-such-model")
    message = str(error.value)
    assert "'r2s-tests/no-such-model'" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "local folder" in message and ".gguf" in message

    missing = tmp_path / "missing.gguf"
    with pytest.raises(LLMSourceError, match=f"does not exist.*{missing}"):
        load_llm(str(missing))


def test_broken_gguf_leaves_no_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R2S_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(LLMSourceError, match=f"Could not convert {broken}"):
        load_llm(str(broken))
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.slow
def test_default_llm_loads_offline_through_the_cache_and_chats() -> None:
    folder = conversion_folder(packaged_gguf(), "model")
    assert folder.name.endswith(f"-{weights_sha256(packaged_gguf())[:16]}-transformers5")
    first = load_llm()
    assert Path(first.model.name_or_path) == folder
    del first
    weights = (folder / "model.safetensors").stat()

    bundle = load_llm()
    again = (folder / "model.safetensors").stat()
    assert Path(bundle.model.name_or_path) == folder
    assert (again.st_ino, again.st_mtime_ns) == (weights.st_ino, weights.st_mtime_ns)
    assert bundle.source == "smollm2"
    assert bundle.weights_sha256 == weights_sha256(packaged_gguf())
    assert bundle.hidden_size == 576
    assert bundle.token_ids["[REL]"] == 49152

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = bundle.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = bundle.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    answer = bundle.tokenizer.decode(
        output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert answer.strip()

    by_path = load_llm(str(packaged_gguf()))
    assert Path(by_path.model.name_or_path) == folder
    assert by_path.source == str(packaged_gguf().resolve())


@pytest.mark.slow
def test_truncated_cache_entry_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = conversion_folder(packaged_gguf(), "model")
    if not real.is_dir():
        load_llm()
    monkeypatch.setenv("R2S_CACHE_DIR", str(tmp_path))
    entry = conversion_folder(packaged_gguf(), "model")
    shutil.copytree(real, entry)
    weights = entry / "model.safetensors"
    with weights.open("r+b") as stream:
        stream.truncate(weights.stat().st_size // 2)

    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        bundle = load_llm()
    assert Path(bundle.model.name_or_path) == entry
    assert filecmp.cmp(real / "model.safetensors", weights, shallow=False)
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]
