"""Instruction-conditioned compression of superpoint tokens into a fixed set of LLM scene tokens."""

import torch
from torch import Tensor, nn


def attendable_padding(valid: Tensor) -> Tensor:
    """Key padding (True = ignore) from validity (B, L) bool; never ignores every key of a sample.

    A sample without valid keys would give softmax over nothing (NaN); it attends to all of its
    meaningless keys instead, as it has no valid entries whose outputs need protecting.
    """
    return ~valid & valid.any(dim=-1, keepdim=True)


class _CompressorLayer(nn.Module):
    """Pre-norm block: self-attention over [queries ; text], cross-attention to superpoints, FFN."""

    def __init__(self, hidden_dim: int, num_heads: int) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(hidden_dim)
        self.self_attn = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(hidden_dim)
        self.cross_attn = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, 4 * hidden_dim), nn.GELU(), nn.Linear(4 * hidden_dim, hidden_dim)
        )

    def forward(
        self,
        queries: Tensor,
        text: Tensor,
        text_padding: Tensor,
        superpoints: Tensor,
        superpoint_padding: Tensor,
    ) -> Tensor:
        """queries (B,Q,H); text (B,T,H), superpoints (B,S,H) with key paddings (B,T), (B,S)."""
        normed = self.self_norm(queries)
        # Text is context only (never updated): just the queries leave the compressor, and the
        # queries themselves are always valid keys, so the self-attention never sees an empty row.
        context = torch.cat([normed, text], dim=1)
        query_padding = text_padding.new_zeros(queries.shape[:2])
        context_padding = torch.cat([query_padding, text_padding], dim=1)
        queries = (
            queries
            + self.self_attn(
                normed, context, context, key_padding_mask=context_padding, need_weights=False
            )[0]
        )
        normed = self.cross_norm(queries)
        queries = (
            queries
            + self.cross_attn(
                normed,
                superpoints,
                superpoints,
                key_padding_mask=superpoint_padding,
                need_weights=False,
            )[0]
        )
        return queries + self.ffn(self.ffn_norm(queries))


class SceneCompressor(nn.Module):
    """Q-Former-like compressor: learned queries read the scene, conditioned on the instruction."""

    def __init__(
        self,
        feature_dim: int,
        text_dim: int,
        llm_dim: int,
        *,
        num_queries: int = 32,
        hidden_dim: int = 256,
        num_layers: int = 2,
        num_heads: int = 8,
    ) -> None:
        super().__init__()
        self.queries = nn.Parameter(0.02 * torch.randn(num_queries, hidden_dim))
        # Normalise once after projection: LLM embeddings and encoder features differ in scale.
        self.superpoint_in = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.LayerNorm(hidden_dim)
        )
        self.text_in = nn.Sequential(nn.Linear(text_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.layers = nn.ModuleList(
            _CompressorLayer(hidden_dim, num_heads) for _ in range(num_layers)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, llm_dim))

    def forward(
        self, superpoint_tokens: Tensor, superpoint_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> Tensor:
        """Compress a scene into scene tokens.

        Args:
            superpoint_tokens: (B, S, feature_dim) float, features + spatial encoding.
            superpoint_mask: (B, S) bool, True = valid superpoint.
            text: (B, T, text_dim) float, instruction token embeddings.
            text_mask: (B, T) bool, True = valid token.

        Returns:
            (B, num_queries, llm_dim) scene tokens in the module's dtype. Padded superpoints and
            text tokens have no influence; an empty instruction is allowed.
        """
        # Zeroing padding keeps NaN/inf padding values out of the (zero-weighted) attention sums.
        superpoints = self.superpoint_in(
            superpoint_tokens.masked_fill(~superpoint_mask[..., None], 0)
        )
        text = self.text_in(text.masked_fill(~text_mask[..., None], 0))
        superpoint_padding = attendable_padding(superpoint_mask)
        text_padding = ~text_mask
        queries = self.queries.to(superpoints.dtype).expand(superpoints.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, text, text_padding, superpoints, superpoint_padding)
        return self.out(queries)
