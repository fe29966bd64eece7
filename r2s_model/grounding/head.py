"""The grounding head: [REL]/[SEG] hidden states of the LLM choose among the object tokens.

Stage 1 reads the [REL] states together with every object and scores, per [REL], each object
and "none". Stage 2 reads the [SEG] state, the chosen relevant objects (prior tokens) and every
object, each object also carrying its geometry relative to each prior (`relation_features`,
with whether that prior fits the target's name: a reference is measured from, another
candidate compared with), and scores each object and "no target". Both also read the LLM's
states of the question's words, so what the answer's name leaves out ("nearest the window",
"the red one") stays in reach, and know which objects fit the name the LLM wrote before the
[REL]/[SEG] (`name_matches`). Both are small transformers over [queries, (priors,) words,
objects]: attention lets candidates compare with one another (nearest, largest), the relation
features make spatial words cheap to learn.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from r2s_model.grounding.objects import NUM_RELATION_FEATURES, ObjectSet, relation_features
from r2s_model.spatial import SpatialEncoding

QUERY, PRIOR, OBJECT, WORD = range(4)


class _Scorer(nn.Module):
    """Query (B, R, d) x keys (B, K, d) + a learned weight x match (B, R, K) -> (B, R, K + 1)
    logits; the last column is "none"."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.none = nn.Linear(dim, 1)
        self.match_weight = nn.Parameter(torch.ones(()))

    def forward(self, queries: Tensor, keys: Tensor, valid: Tensor, match: Tensor) -> Tensor:
        logits = torch.einsum("brd,bkd->brk", self.query(queries), self.key(keys))
        logits = logits / math.sqrt(queries.shape[-1]) + self.match_weight * match
        logits = logits.masked_fill(~valid[:, None, :], torch.finfo(logits.dtype).min)
        return torch.cat([logits, self.none(queries)], dim=-1)


def _layers(dim: int, count: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, count, enable_nested_tensor=False)


class GroundingHead(nn.Module):
    """Scores objects for [REL] and [SEG] states; see the module docstring."""

    def __init__(
        self,
        llm_hidden: int,
        feature_dim: int,
        num_categories: int,
        num_colors: int,
        *,
        dim: int = 256,
        num_layers: int = 2,
        num_heads: int = 4,
        max_priors: int = 4,
        spatial_frequencies: int = 8,
    ) -> None:
        super().__init__()
        self.object_in = nn.Sequential(
            nn.Linear(feature_dim + num_categories + num_colors, dim),
            nn.GELU(),
            nn.Linear(dim, dim),
        )
        self.spatial = SpatialEncoding(dim, spatial_frequencies)
        self.query_in = nn.Sequential(nn.LayerNorm(llm_hidden), nn.Linear(llm_hidden, dim))
        self.word_in = nn.Sequential(nn.LayerNorm(llm_hidden), nn.Linear(llm_hidden, dim))
        # A prior's geometry feature row ends with whether that prior fits the target's name:
        # "the chair farthest from the box" measures from the box, not from the other chairs.
        self.relation = nn.Sequential(
            nn.Linear(NUM_RELATION_FEATURES + 1, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.prior_slot = nn.Embedding(max_priors, dim)
        self.kind = nn.Embedding(4, dim)
        self.name_match = nn.Parameter(torch.zeros(dim))
        self.relevant_layers = _layers(dim, num_layers, num_heads)
        self.target_layers = _layers(dim, num_layers, num_heads)
        self.relevant_scorer = _Scorer(dim)
        self.target_scorer = _Scorer(dim)
        self.max_priors = max_priors

    def object_tokens(self, objects: ObjectSet) -> Tensor:
        """(B, K) objects -> (B, K, dim): evidence (features, categories, colors) + box."""
        evidence = torch.cat(
            [objects.features, objects.category_probs, objects.color_probs], dim=-1
        )
        low, high = objects.scene_box()
        box = self.spatial(objects.centers, objects.sizes, low, high)
        return self.object_in(evidence) + box

    def word_tokens(self, words: Tensor) -> Tensor:
        """(B, W, H) LLM states of the question's words -> (B, W, dim)."""
        return self.word_in(words) + self.kind.weight[WORD]

    def relevant_logits(
        self,
        states: Tensor,
        state_valid: Tensor,
        objects: ObjectSet,
        words: Tensor,
        word_valid: Tensor,
        match: Tensor,
    ) -> Tensor:
        """states (B, R, H) at [REL], state_valid (B, R) bool, words (B, W, H) with word_valid
        (B, W) bool, match (B, R, K) float32 (`name_matches` of each [REL]'s name) ->
        (B, R, K + 1) logits."""
        count = states.shape[1]
        queries = self.query_in(states) + self.kind.weight[QUERY]
        tokens = self.object_tokens(objects) + self.kind.weight[OBJECT]
        valid = torch.cat([state_valid, word_valid, objects.valid], dim=1)
        sequence = torch.cat([queries, self.word_tokens(words), tokens], 1)
        out = self.relevant_layers(sequence, src_key_padding_mask=~valid)
        keys = out[:, count + words.shape[1] :]
        return self.relevant_scorer(out[:, :count], keys, objects.valid, match)

    def target_logits(
        self,
        state: Tensor,
        objects: ObjectSet,
        priors: Tensor,
        prior_valid: Tensor,
        words: Tensor,
        word_valid: Tensor,
        match: Tensor,
    ) -> Tensor:
        """state (B, H) at [SEG]; priors (B, P) int64 object indices (P <= max_priors, P may be
        0 for single-stage), prior_valid (B, P) bool; words (B, W, H), word_valid (B, W);
        match (B, K) float32 (`name_matches` of the target's name) -> (B, K + 1) logits."""
        query = self.query_in(state)[:, None] + self.kind.weight[QUERY]
        tokens = self.object_tokens(objects) + match[..., None] * self.name_match
        count = priors.shape[1]
        parts, valid = [query], [objects.valid.new_ones(len(state), 1)]
        if count:
            index = priors.clamp_min(0)
            gather = index[..., None].expand(-1, -1, 3)
            anchor_min = objects.box_min.gather(1, gather)
            anchor_max = objects.box_max.gather(1, gather)
            slots = self.prior_slot.weight[:count]
            geometry = relation_features(objects, anchor_min, anchor_max)
            fits = match.gather(1, index)[:, None, :, None].expand(*geometry.shape[:-1], 1)
            relations = self.relation(torch.cat([geometry, fits], dim=-1))
            relations = (relations + slots) * prior_valid[:, None, :, None]
            prior_tokens = tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))
            parts.append(prior_tokens + slots + self.kind.weight[PRIOR])
            valid.append(prior_valid)
            tokens = tokens + relations.sum(2)
        parts += [self.word_tokens(words), tokens + self.kind.weight[OBJECT]]
        valid += [word_valid, objects.valid]
        mask = torch.cat(valid, dim=1)
        out = self.target_layers(torch.cat(parts, 1), src_key_padding_mask=~mask)
        keys = out[:, 1 + count + words.shape[1] :]
        return self.target_scorer(out[:, :1], keys, objects.valid, match[:, None])[:, 0]
