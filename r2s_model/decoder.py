"""Mask decoder: LLM hidden states at [REL]/[SEG] tokens -> per-superpoint mask logits.

The decoder adds no spatial encoding of its own. Sparse-conv features are translation-invariant,
so a caller that needs location-based disambiguation ("the left of two identical chairs") should
pass features + ``SpatialEncoding`` as ``superpoint_features``; the decoder is agnostic to which.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2s_model.compressor import attendable_padding

# Logit written at padded superpoints: probability exactly 0 in float32/bf16, finite in float16.
PAD_LOGIT = -1.0e4


@dataclass
class DecoderOutput:
    """Decoder predictions; entries of invalid queries are finite but meaningless."""

    mask_logits: Tensor  # (B,K,S) final layer; PAD_LOGIT at padded superpoints
    # num_layers x (B,K,S): predictions from the initial queries and after each layer but the last
    aux_mask_logits: list[Tensor]
    score_logits: Tensor  # (B,K) "this query's object exists"
    query_embeddings: Tensor  # (B,K,d_model) final query states
    query_mask: Tensor | None = None  # (B,K) bool valid queries; None = all valid


def _cross_attention_block(mask_logits: Tensor, superpoint_padding: Tensor) -> Tensor:
    """(B,K,S) bool, True = blocked: superpoints outside the current mask (prob < 0.5) or padded.

    A query whose mask is empty falls back to seeing every valid superpoint, so it can recover.
    """
    padding = superpoint_padding[:, None, :]
    blocked = (mask_logits < 0) | padding
    return torch.where(blocked.all(dim=-1, keepdim=True), padding, blocked)


class _DecoderLayer(nn.Module):
    """Pre-norm block: masked cross-attention to superpoints, self-attention among queries, FFN."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.cross_norm = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.self_norm = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(
        self, queries: Tensor, memory: Tensor, blocked: Tensor, query_padding: Tensor
    ) -> Tensor:
        """queries (B,K,D); memory (B,S,D); blocked (B,K,S) bool; query_padding (B,K) bool."""
        normed = self.cross_norm(queries)
        attn_mask = blocked.repeat_interleave(self.num_heads, dim=0)
        queries = (
            queries
            + self.cross_attn(normed, memory, memory, attn_mask=attn_mask, need_weights=False)[0]
        )
        # nn.MultiheadAttention cannot reshape an empty key padding mask (a batch without tokens).
        if queries.shape[1] > 0:
            normed = self.self_norm(queries)
            queries = (
                queries
                + self.self_attn(
                    normed, normed, normed, key_padding_mask=query_padding, need_weights=False
                )[0]
            )
        return queries + self.ffn(self.ffn_norm(queries))


class MaskDecoder(nn.Module):
    """Mask2Former-style query decoder driven by LLM token hidden states."""

    def __init__(
        self,
        llm_dim: int,
        feature_dim: int,
        *,
        d_model: int = 256,
        num_layers: int = 3,
        num_heads: int = 8,
    ) -> None:
        super().__init__()
        # The input norm absorbs the very different hidden-state scales of different LLMs.
        self.query_in = nn.Sequential(
            nn.LayerNorm(llm_dim),
            nn.Linear(llm_dim, d_model),
            nn.GELU(),
            nn.Linear(d_model, d_model),
        )
        self.superpoint_in = nn.Sequential(
            nn.Linear(feature_dim, d_model),
            nn.GELU(),
            nn.Linear(d_model, d_model),
            nn.LayerNorm(d_model),
        )
        self.layers = nn.ModuleList(_DecoderLayer(d_model, num_heads) for _ in range(num_layers))
        # Prediction heads are shared by all layers so auxiliary losses train the same heads.
        self.head_norm = nn.LayerNorm(d_model)
        self.mask_embed = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.score_head = nn.Linear(d_model, 1)

    def forward(
        self,
        token_states: Tensor,
        token_mask: Tensor,
        superpoint_features: Tensor,
        superpoint_mask: Tensor,
    ) -> DecoderOutput:
        """Decode one mask per token.

        Args:
            token_states: (B, K, llm_dim) float, LLM hidden states at [REL]/[SEG] positions.
            token_mask: (B, K) bool, True = valid token; a sample may have none.
            superpoint_features: (B, S, feature_dim) float.
            superpoint_mask: (B, S) bool, True = valid superpoint.

        Returns:
            DecoderOutput with logits in the module's dtype. Padded superpoints and padded tokens
            do not influence the outputs of valid ones.
        """
        # Zeroing padding keeps NaN/inf padding values out of the (zero-weighted) attention sums.
        queries = self.query_in(token_states.masked_fill(~token_mask[..., None], 0))
        memory = self.superpoint_in(superpoint_features.masked_fill(~superpoint_mask[..., None], 0))
        superpoint_padding = attendable_padding(superpoint_mask)
        query_padding = attendable_padding(token_mask)

        mask_logits = self._predict_masks(queries, memory, superpoint_mask)
        aux_mask_logits = []
        for layer in self.layers:
            aux_mask_logits.append(mask_logits)
            blocked = _cross_attention_block(mask_logits, superpoint_padding)
            queries = layer(queries, memory, blocked, query_padding)
            mask_logits = self._predict_masks(queries, memory, superpoint_mask)

        score_logits = self.score_head(self.head_norm(queries)).squeeze(-1)
        return DecoderOutput(mask_logits, aux_mask_logits, score_logits, queries, token_mask)

    def _predict_masks(self, queries: Tensor, memory: Tensor, superpoint_mask: Tensor) -> Tensor:
        """(B,K,D) queries, (B,S,D) memory, (B,S) valid -> (B,K,S) logits, PAD_LOGIT at padding."""
        embeddings = self.mask_embed(self.head_norm(queries))
        logits = torch.einsum("bkd,bsd->bks", embeddings, memory) / math.sqrt(memory.shape[-1])
        return logits.masked_fill(~superpoint_mask[:, None, :], PAD_LOGIT)
