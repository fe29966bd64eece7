"""The one place for spconv shims: making spconv 2.3.8's CPU sparse convolution usable.

Both problems are in `spconv/pytorch/ops.py` of spconv 2.3.8 (checked against the installed
source) and only affect tensors on the CPU; CUDA tensors take other code paths.

1. Backward needs CUDA. `indice_conv_backward` (the backward of SubMConv3d, SparseConv3d and
   SparseInverseConv3d) calls `get_current_stream()`, i.e. `torch.cuda.current_stream()`,
   before it branches to its CPU path, which never uses the stream. With a CPU-only torch that
   raises "Torch not compiled with CUDA enabled". Shim: when CUDA is unavailable,
   `spconv.pytorch.ops.get_current_stream` returns stream 0.

2. Forward and backward are wrong with more than one thread. The CPU path is gather, matmul,
   then `SpconvOps.scatter_add_cpu`, whose OpenMP loop (`GatherCPU::scatter_add` in
   `spconv/csrc/sparse/gather.py`) writes its row pointers to variables shared by all threads,
   so rows are silently added to the wrong outputs. Shim: `spconv.pytorch.ops.SpconvOps` is
   wrapped so that `scatter_add_cpu` runs as a torch `index_add_` on the same memory.

When to remove: `tests/model/test_spconv_compat.py` checks in fresh processes that each
problem still occurs without its shim. When an spconv release fixes one, its test fails; then
delete that shim here, its call in `encoder.py`, and its test.
"""

from __future__ import annotations

from typing import Any

import spconv.pytorch.ops as spconv_ops
import torch


def _stream_or_zero() -> int:
    """CUDA stream handle, or 0 (the null stream, ignored by spconv's CPU paths) without CUDA."""
    if torch.cuda.is_available():
        return torch.cuda.current_stream().cuda_stream
    return 0


def cpu_backward_needs_patch() -> bool:
    """True when CUDA is unavailable and spconv's ops still use the CUDA stream getter."""
    stream_getter = getattr(spconv_ops, "get_current_stream", None)
    return (
        not torch.cuda.is_available()
        and stream_getter is not None
        and stream_getter is not _stream_or_zero
    )


def patch_spconv_cpu_backward() -> bool:
    """Install the stream shim if needed (idempotent); returns whether the shim is active."""
    if cpu_backward_needs_patch():
        spconv_ops.get_current_stream = _stream_or_zero
    return getattr(spconv_ops, "get_current_stream", None) is _stream_or_zero


class _OpsWithSafeScatter:
    """spconv's SpconvOps with a race-free `scatter_add_cpu`; all else is forwarded."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    @staticmethod
    def scatter_add_cpu(out: Any, values: Any, indices: Any) -> None:
        """out[indices[i]] += values[i] for i < len(indices), in place; tv.Tensor arguments.

        values may have more rows than indices (spconv passes a reused buffer).
        """
        rows = torch.from_numpy(indices.numpy_view()).long()
        source = torch.from_numpy(values.numpy_view())[: len(rows)]
        torch.from_numpy(out.numpy_view()).index_add_(0, rows, source)


def cpu_scatter_needs_patch() -> bool:
    """True when spconv's ops still route CPU scatter-add through the racy compiled kernel."""
    ops = getattr(spconv_ops, "SpconvOps", None)
    return ops is not None and not isinstance(ops, _OpsWithSafeScatter)


def patch_spconv_cpu_scatter() -> bool:
    """Install the scatter-add shim if needed (idempotent); returns whether it is active."""
    if cpu_scatter_needs_patch():
        spconv_ops.SpconvOps = _OpsWithSafeScatter(spconv_ops.SpconvOps)
    return isinstance(getattr(spconv_ops, "SpconvOps", None), _OpsWithSafeScatter)
