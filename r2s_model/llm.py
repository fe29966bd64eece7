"""The language model of R²S: loading it, adding its special tokens, and choosing what trains.

The LLM marks relevant objects with ``[REL]`` and the target with ``[SEG]``; the scene's
object tokens enter through ``inputs_embeds`` at ``<scene>`` placeholder positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from r2s_model.llm_cache import (
    DEFAULT_LLM_SOURCE,
    LLMSourceError,
    cache_dir,
    load_converted,
    load_resolved,
    packaged_gguf,
    resolve_source,
    state_dict_sha256,
    weights_sha256,
)

__all__ = [
    "DEFAULT_LLM_SOURCE",
    "SPECIAL_TOKENS",
    "LLMBundle",
    "LLMSourceError",
    "build_tiny_llm",
    "cache_dir",
    "load_llm",
    "load_trainable_state_dict",
    "set_training_mode",
    "trainable_parameters",
    "trainable_state_dict",
    "weights_sha256",
]

SPECIAL_TOKENS: tuple[str, ...] = ("[REL]", "[SEG]", "<scene>")
TrainingMode = Literal["frozen", "lora", "full"]
_TINY_SOURCE = re.compile(
    r"tiny-llama\(hidden=(?P<hidden_size>\d+),layers=(?P<num_layers>\d+),"
    r"heads=(?P<num_heads>\d+),seed=(?P<seed>\d+)\)"
)
_NEW_ROW_NOISE = 0.01  # relative to the std of the original rows; breaks the tie between tokens


@dataclass
class LLMBundle:
    """A causal LM with the R²S special tokens added, plus what identifies its base weights."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    weights_sha256: str
    token_ids: dict[str, int]
    hidden_size: int
    training_mode: TrainingMode | None = None  # set once by set_training_mode


def load_llm(source: str | None = None, *, torch_dtype: torch.dtype = torch.float32) -> LLMBundle:
    """Loads ``source`` (see :func:`~r2s_model.llm_cache.resolve_source`), adds special tokens.

    GGUF sources load from the safetensors conversion cache, converting on first use. A source
    written by :func:`build_tiny_llm` (``tiny-llama(hidden=..,layers=..,heads=..,seed=..)``)
    rebuilds that random model, so checkpoints of tiny test models load too.
    """
    tiny = _TINY_SOURCE.fullmatch(source or "")
    if tiny:
        return build_tiny_llm(**{k: int(v) for k, v in tiny.groupdict().items()})
    resolved = resolve_source(source)

    def from_folder(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
        return model, AutoTokenizer.from_pretrained(folder)

    model, tokenizer = load_resolved(resolved, from_folder)
    return _with_special_tokens(model, tokenizer, resolved.source, resolved.weights_sha256)


def build_tiny_llm(
    *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0
) -> LLMBundle:
    """A randomly initialised Llama with the real default tokenizer, for tests and smoke training.

    The same arguments give bit-identical weights; the caller's RNG state is left untouched.
    """
    tokenizer = load_converted(packaged_gguf(), "tokenizer", AutoTokenizer.from_pretrained)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,  # as in SmolLM2
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    digest = state_dict_sha256(model)
    source = f"tiny-llama(hidden={hidden_size},layers={num_layers},heads={num_heads},seed={seed})"
    return _with_special_tokens(model, tokenizer, source, digest)


def set_training_mode(
    bundle: LLMBundle, mode: TrainingMode, *, lora_rank: int = 8, lora_alpha: int = 16
) -> LLMBundle:
    """Chooses what trains, in place; returns ``bundle`` whose ``.model`` may now be peft-wrapped.

    - ``frozen``: only the special-token embedding rows train.
    - ``lora``: those rows plus LoRA adapters on ``q_proj``/``v_proj``.
    - ``full``: every parameter trains.

    In ``frozen``/``lora`` the input (and, if untied, output) embeddings are split into a frozen
    parameter for the original rows and a trainable one for the special-token rows. Any optimizer
    over :func:`trainable_parameters` is then safe: weight decay cannot move the original rows.
    """
    if bundle.training_mode is not None:
        raise ValueError(
            f"Training mode is already {bundle.training_mode!r}; load a fresh bundle to change it."
        )
    model = bundle.model
    if mode == "full":
        model.requires_grad_(True)
    elif mode in ("frozen", "lora"):
        model.requires_grad_(False)
        _split_special_rows(model, num_original=min(bundle.token_ids.values()))
        if mode == "lora":
            lora = LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha,
                lora_dropout=0.0,
                target_modules=["q_proj", "v_proj"],
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
            # peft freezes everything but its adapters, the special-token rows included.
            for module in model.modules():
                if isinstance(module, _SplitEmbedding | _SplitHead):
                    module.special_rows.requires_grad_(True)
    else:
        raise ValueError(f"Unknown training mode {mode!r}; expected 'frozen', 'lora' or 'full'.")
    bundle.model = model
    bundle.training_mode = mode
    return bundle


def trainable_parameters(bundle: LLMBundle) -> list[nn.Parameter]:
    """The parameters that training may change (give these to the optimizer)."""
    return [p for p in bundle.model.parameters() if p.requires_grad]


def trainable_state_dict(bundle: LLMBundle) -> dict[str, Tensor]:
    """CPU copies of the trainable parameters: LoRA weights and special-token rows, or everything
    in ``full`` mode (tied weights once). Keys are specific to the bundle's training mode."""
    return {
        name: p.detach().to("cpu", copy=True)
        for name, p in bundle.model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state_dict(bundle: LLMBundle, state: dict[str, Tensor]) -> None:
    """Inverse of :func:`trainable_state_dict`; the keys and shapes must match exactly."""
    parameters = {n: p for n, p in bundle.model.named_parameters() if p.requires_grad}
    missing = sorted(parameters.keys() - state.keys())
    unexpected = sorted(state.keys() - parameters.keys())
    mismatched = [
        f"{name}: checkpoint {tuple(state[name].shape)} vs model {tuple(p.shape)}"
        for name, p in parameters.items()
        if name in state and state[name].shape != p.shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(items)}): {', '.join(items[:5])}{', ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if items
        ]
        raise ValueError(
            f"LLM trainable state does not fit this model (training mode "
            f"{bundle.training_mode!r}, source {bundle.source!r}); was it saved with the same "
            f"mode and base LLM? " + "; ".join(problems)
        )
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(state[name])


class _SplitEmbedding(nn.Module):
    """Token embedding with the original rows and the special-token rows in separate parameters."""

    def __init__(self, weight: Tensor, num_original: int) -> None:
        super().__init__()
        self.original_rows = nn.Parameter(weight.detach()[:num_original], requires_grad=False)
        self.special_rows = nn.Parameter(weight.detach()[num_original:].clone())

    def forward(self, input_ids: Tensor) -> Tensor:
        """(...) token ids -> (..., hidden) embeddings."""
        num_original = self.original_rows.shape[0]
        is_special = (input_ids >= num_original).unsqueeze(-1)
        original = F.embedding(input_ids.clamp(max=num_original - 1), self.original_rows)
        special = F.embedding((input_ids - num_original).clamp(min=0), self.special_rows)
        return torch.where(is_special, special, original)


class _SplitHead(nn.Module):
    """Bias-free LM head over original + special-token rows (the embedding's, when tied)."""

    def __init__(self, original_rows: nn.Parameter, special_rows: nn.Parameter) -> None:
        super().__init__()
        self.original_rows = original_rows
        self.special_rows = special_rows

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., hidden) -> (..., vocab) logits."""
        return torch.cat(
            (F.linear(hidden, self.original_rows), F.linear(hidden, self.special_rows)), dim=-1
        )


def _split_special_rows(model: PreTrainedModel, num_original: int) -> None:
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    split_embedding = _SplitEmbedding(embedding.weight, num_original)
    if head.weight is embedding.weight:
        split_head = _SplitHead(split_embedding.original_rows, split_embedding.special_rows)
    elif getattr(head, "bias", None) is None:
        untied = _SplitEmbedding(head.weight, num_original)
        split_head = _SplitHead(untied.original_rows, untied.special_rows)
    else:
        raise ValueError("LM heads with a bias are not supported")
    model.set_input_embeddings(split_embedding)
    model.set_output_embeddings(split_head)


def _with_special_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str, digest: str
) -> LLMBundle:
    """Adds SPECIAL_TOKENS after the tokenizer's vocabulary; their rows start at the mean row."""
    num_original = len(tokenizer)
    clashes = [t for t in SPECIAL_TOKENS if t in tokenizer.get_vocab()]
    if clashes:
        raise LLMSourceError(f"Base tokenizer of {source!r} already has tokens {clashes}")
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    # Resizing to the tokenizer drops the rows of padded vocabularies, so that the special tokens
    # own exactly the rows from num_original on. It draws the new rows (overwritten below) from
    # the global RNG, whose state stays the caller's; the model is still on the CPU here.
    with torch.random.fork_rng(devices=[]):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    generator = torch.Generator().manual_seed(0)
    embeddings = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    with torch.no_grad():
        for weight in {id(w): w for w in embeddings}.values():
            original = weight[:num_original].float()
            noise = torch.randn(len(SPECIAL_TOKENS), weight.shape[1], generator=generator)
            rows = original.mean(0) + _NEW_ROW_NOISE * original.std() * noise.to(weight.device)
            weight[num_original:] = rows.to(weight.dtype)
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert sorted(token_ids.values()) == list(range(num_original, len(tokenizer)))
    return LLMBundle(model, tokenizer, source, digest, token_ids, model.config.hidden_size)
