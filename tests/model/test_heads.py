"""Tests for the spatial encoding, scene compressor, mask decoder and mask losses."""

import math

import pytest
import torch

from r2s_model.compressor import SceneCompressor
from r2s_model.decoder import PAD_LOGIT, DecoderOutput, MaskDecoder
from r2s_model.losses import (
    MaskLossWeights,
    dice_loss,
    hungarian_match,
    set_mask_loss,
    sigmoid_bce_loss,
)
from r2s_model.spatial import SpatialEncoding

B, S, T, K = 2, 12, 5, 3
FEATURE_DIM, TEXT_DIM, LLM_DIM = 16, 24, 40


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _masks() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Superpoint (B,S), text (B,T) and token (B,K) validity with padding in every dimension."""
    superpoint_mask = torch.ones(B, S, dtype=torch.bool)
    superpoint_mask[1, 7:] = False
    text_mask = torch.ones(B, T, dtype=torch.bool)
    text_mask[0, 3:] = False
    token_mask = torch.ones(B, K, dtype=torch.bool)
    token_mask[0, 2:] = False
    token_mask[1] = False  # a sample without any [REL] token
    return superpoint_mask, text_mask, token_mask


def _scramble_padding(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Replace padded entries of (B,L,...) values with large garbage."""
    garbage = 1e3 * torch.randn_like(values)
    return torch.where(valid[..., None], values, garbage)


def _decoder() -> MaskDecoder:
    return MaskDecoder(LLM_DIM, FEATURE_DIM, d_model=32, num_layers=2, num_heads=4)


# --- SpatialEncoding ---------------------------------------------------------------------------


def _boxes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    scene_min = torch.tensor([[-2.0, -3.0, 0.0], [0.0, 0.0, 0.0]])
    scene_max = torch.tensor([[4.0, 3.0, 2.5], [8.0, 6.0, 3.0]])
    span = scene_max - scene_min
    centroids = scene_min[:, None] + torch.rand(B, S, 3) * span[:, None]
    extents = 0.05 + 2.0 * torch.rand(B, S, 3)
    return centroids, extents, scene_min, scene_max


def test_spatial_encoding_shape_and_dtype() -> None:
    encoding = SpatialEncoding(out_dim=20, num_frequencies=6)
    out = encoding(*_boxes())
    assert out.shape == (B, S, 20)
    assert out.dtype == torch.float32
    # Degenerate padding (zero extents, centroid at origin) must stay finite.
    centroids, extents, scene_min, scene_max = _boxes()
    assert torch.isfinite(encoding(centroids * 0, extents * 0, scene_min, scene_max)).all()


def test_spatial_encoding_distinguishes_positions_and_sizes() -> None:
    encoding = SpatialEncoding(out_dim=32)
    centroids, extents, scene_min, scene_max = _boxes()
    base = encoding(centroids, extents, scene_min, scene_max)
    moved = encoding(centroids + torch.tensor([0.3, 0.0, 0.0]), extents, scene_min, scene_max)
    resized = encoding(centroids, extents * 1.5, scene_min, scene_max)
    assert (base - moved).norm(dim=-1).min() > 1e-2
    assert (base - resized).norm(dim=-1).min() > 1e-2


def test_spatial_encoding_translation_invariant() -> None:
    encoding = SpatialEncoding(out_dim=32)
    centroids, extents, scene_min, scene_max = _boxes()
    shift = torch.tensor([[5.0, -7.0, 1.5], [-3.0, 2.0, 0.25]])
    base = encoding(centroids, extents, scene_min, scene_max)
    shifted = encoding(centroids + shift[:, None], extents, scene_min + shift, scene_max + shift)
    torch.testing.assert_close(shifted, base, atol=1e-4, rtol=0)


# --- SceneCompressor ---------------------------------------------------------------------------


def _compressor() -> SceneCompressor:
    return SceneCompressor(
        FEATURE_DIM, TEXT_DIM, LLM_DIM, num_queries=6, hidden_dim=32, num_layers=2, num_heads=4
    )


def test_compressor_shape_and_padding_invariance() -> None:
    compressor = _compressor().eval()
    superpoint_mask, text_mask, _ = _masks()
    tokens = torch.randn(B, S, FEATURE_DIM)
    text = torch.randn(B, T, TEXT_DIM)
    out = compressor(tokens, superpoint_mask, text, text_mask)
    assert out.shape == (B, 6, LLM_DIM)
    assert out.dtype == torch.float32
    scrambled = compressor(
        _scramble_padding(tokens, superpoint_mask),
        superpoint_mask,
        _scramble_padding(text, text_mask),
        text_mask,
    )
    torch.testing.assert_close(scrambled, out, atol=1e-6, rtol=0)


def test_compressor_is_conditioned_on_text() -> None:
    compressor = _compressor()
    superpoint_mask, text_mask, _ = _masks()
    tokens = torch.randn(B, S, FEATURE_DIM)
    out = compressor(tokens, superpoint_mask, torch.randn(B, T, TEXT_DIM), text_mask)
    other = compressor(tokens, superpoint_mask, torch.randn(B, T, TEXT_DIM), text_mask)
    assert (out - other).abs().max() > 1e-3
    no_text = compressor(tokens, superpoint_mask, torch.randn(B, 0, TEXT_DIM), text_mask[:, :0])
    assert torch.isfinite(no_text).all()


def test_compressor_gradients_reach_every_parameter() -> None:
    compressor = _compressor()
    superpoint_mask, text_mask, _ = _masks()
    out = compressor(
        torch.randn(B, S, FEATURE_DIM), superpoint_mask, torch.randn(B, T, TEXT_DIM), text_mask
    )
    (out * torch.randn_like(out)).sum().backward()
    for name, parameter in compressor.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# --- MaskDecoder -------------------------------------------------------------------------------


def test_decoder_shapes_and_no_nan_for_empty_sample() -> None:
    decoder = _decoder()
    superpoint_mask, _, token_mask = _masks()
    out = decoder(
        torch.randn(B, K, LLM_DIM), token_mask, torch.randn(B, S, FEATURE_DIM), superpoint_mask
    )
    assert out.mask_logits.shape == (B, K, S)
    assert len(out.aux_mask_logits) == 2
    assert all(aux.shape == (B, K, S) for aux in out.aux_mask_logits)
    assert out.score_logits.shape == (B, K)
    assert out.query_embeddings.shape == (B, K, 32)
    assert out.mask_logits.dtype == out.score_logits.dtype == torch.float32
    for tensor in [out.mask_logits, out.score_logits, out.query_embeddings, *out.aux_mask_logits]:
        assert torch.isfinite(tensor).all()
    assert (out.mask_logits[1, :, 7:] == PAD_LOGIT).all()


def test_decoder_handles_batch_without_tokens() -> None:
    decoder = _decoder()
    superpoint_mask, _, _ = _masks()
    out = decoder(
        torch.randn(B, 0, LLM_DIM),
        torch.ones(B, 0, dtype=torch.bool),
        torch.randn(B, S, FEATURE_DIM),
        superpoint_mask,
    )
    assert out.mask_logits.shape == (B, 0, S)
    losses = set_mask_loss(
        out, [torch.rand(2, S), torch.rand(1, S)], None, MaskLossWeights(), match=True
    )
    assert all(loss.item() == 0.0 for loss in losses.values())


def test_decoder_padding_invariance() -> None:
    decoder = _decoder().eval()
    superpoint_mask, _, token_mask = _masks()
    states = torch.randn(B, K, LLM_DIM)
    features = torch.randn(B, S, FEATURE_DIM)
    out = decoder(states, token_mask, features, superpoint_mask)
    scrambled = decoder(
        _scramble_padding(states, token_mask),
        token_mask,
        _scramble_padding(features, superpoint_mask),
        superpoint_mask,
    )
    pair_valid = token_mask[:, :, None] & superpoint_mask[:, None, :]
    for ours, theirs in zip(
        [out.mask_logits, *out.aux_mask_logits],
        [scrambled.mask_logits, *scrambled.aux_mask_logits],
        strict=True,
    ):
        torch.testing.assert_close(theirs[pair_valid], ours[pair_valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        scrambled.score_logits[token_mask], out.score_logits[token_mask], atol=1e-5, rtol=0
    )


def test_decoder_gradients_reach_every_parameter() -> None:
    decoder = _decoder()
    superpoint_mask, _, token_mask = _masks()
    out = decoder(
        torch.randn(B, K, LLM_DIM), token_mask, torch.randn(B, S, FEATURE_DIM), superpoint_mask
    )
    targets = [(torch.rand(3, S) > 0.5).float(), torch.zeros(0, S)]
    losses = set_mask_loss(out, targets, superpoint_mask.float(), MaskLossWeights(), match=True)
    losses["total"].backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# --- losses ------------------------------------------------------------------------------------


def test_bce_and_dice_match_hand_computation() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # probabilities 0.5, 0.75
    targets = torch.tensor([[1.0, 0.0]])
    # BCE terms: -log 0.5 = log 2 and -log 0.25 = 2 log 2.
    assert sigmoid_bce_loss(logits, targets).item() == pytest.approx(1.5 * math.log(2.0))
    # Dice: 1 - (2*0.5 + 1) / (1.25 + 1 + 1).
    assert dice_loss(logits, targets).item() == pytest.approx(1.0 - 2.0 / 3.25)
    weights = torch.tensor([3.0, 1.0])
    assert sigmoid_bce_loss(logits, targets, weights).item() == pytest.approx(1.25 * math.log(2.0))
    # Weighted Dice: 1 - (2*3*0.5 + 1) / ((1.5 + 0.75) + 3 + 1).
    assert dice_loss(logits, targets, weights).item() == pytest.approx(1.0 - 4.0 / 6.25)
    # Mean over K: a second, perfectly predicted row halves the BCE.
    two_rows = torch.cat([logits, torch.tensor([[20.0, -20.0]])])
    assert sigmoid_bce_loss(two_rows, targets.repeat(2, 1)).item() == pytest.approx(
        0.75 * math.log(2.0), abs=1e-6
    )


def test_losses_are_zero_and_attached_for_no_masks() -> None:
    logits = torch.zeros(0, S, requires_grad=True)
    for loss in (sigmoid_bce_loss(logits, torch.zeros(0, S)), dice_loss(logits, torch.zeros(0, S))):
        assert loss.item() == 0.0
        assert loss.requires_grad


def test_hungarian_match_recovers_permutation() -> None:
    targets = (torch.rand(4, 30) > 0.5).float()
    permutation = torch.tensor([2, 0, 3, 1])
    logits = 6.0 * (2.0 * targets[permutation] - 1.0)  # prediction k predicts target perm[k]
    extra = torch.randn(1, 30)  # an unmatched fifth prediction
    pred_idx, target_idx = hungarian_match(torch.cat([logits, extra]), targets)
    assert pred_idx.dtype == target_idx.dtype == torch.int64
    assert pred_idx.tolist() == [0, 1, 2, 3]
    assert target_idx.tolist() == permutation.tolist()


def _fake_output(mask_logits: torch.Tensor, score_logits: torch.Tensor) -> DecoderOutput:
    return DecoderOutput(
        mask_logits=mask_logits,
        aux_mask_logits=[0.5 * mask_logits],
        score_logits=score_logits,
        query_embeddings=torch.zeros(*mask_logits.shape[:2], 4),
        query_mask=torch.tensor([[True, True, True, False], [True, True, False, False]]),
    )


def test_set_mask_loss_invariant_to_query_order() -> None:
    mask_logits = torch.randn(2, 4, S)
    score_logits = torch.randn(2, 4)
    targets = [(torch.rand(2, S) > 0.5).float(), torch.rand(3, S)]
    superpoint_weights = torch.rand(2, S)
    weights = MaskLossWeights()
    base = set_mask_loss(
        _fake_output(mask_logits, score_logits), targets, superpoint_weights, weights, match=True
    )
    # Permute the valid queries of each sample, keeping padded slots where they are.
    order = torch.tensor([[2, 0, 1, 3], [1, 0, 2, 3]])
    permuted_logits = torch.stack([mask_logits[b, order[b]] for b in range(2)])
    permuted_scores = torch.stack([score_logits[b, order[b]] for b in range(2)])
    permuted = set_mask_loss(
        _fake_output(permuted_logits, permuted_scores),
        targets,
        superpoint_weights,
        weights,
        match=True,
    )
    for key in ("bce", "dice", "score", "total"):
        assert permuted[key].item() == pytest.approx(base[key].item(), rel=1e-5)


def test_set_mask_loss_ordered_and_no_target() -> None:
    mask_logits = torch.randn(2, 1, S)
    target = (torch.rand(1, S) > 0.5).float()
    output = DecoderOutput(mask_logits, [], torch.zeros(2, 1), torch.zeros(2, 1, 4))
    losses = set_mask_loss(
        output, [target, torch.zeros(0, S)], None, MaskLossWeights(aux=0.0), match=False
    )
    assert losses["bce"].item() == pytest.approx(sigmoid_bce_loss(mask_logits[0], target).item())
    assert losses["dice"].item() == pytest.approx(dice_loss(mask_logits[0], target).item())
    # Score logits 0 -> BCE log 2 for both the present (target 1) and absent (target 0) sample.
    assert losses["score"].item() == pytest.approx(math.log(2.0))
    expected_total = 2.0 * losses["bce"] + 0.5 * losses["dice"] + 0.5 * losses["score"]
    assert losses["total"].item() == pytest.approx(expected_total.item())


# --- toy training ------------------------------------------------------------------------------

TOY_S = 64


def _toy_batch(concepts: torch.Tensor, token_embeddings: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Token k names concept c (a feature direction); its target = superpoints with f·c > 0."""
    concept_ids = torch.randint(len(concepts), (B, K))
    states = token_embeddings[concept_ids] + 0.1 * torch.randn(B, K, LLM_DIM)
    features = torch.randn(B, TOY_S, FEATURE_DIM)
    targets = (torch.einsum("bkf,bsf->bks", concepts[concept_ids], features) > 0).float()
    return states, features, targets


def _iou(mask_logits: torch.Tensor, targets: torch.Tensor) -> float:
    predicted = mask_logits > 0
    actual = targets > 0.5
    return ((predicted & actual).sum() / (predicted | actual).sum().clamp_min(1)).item()


def test_decoder_learns_toy_problem() -> None:
    decoder = _decoder()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    concepts = torch.randn(4, FEATURE_DIM)
    token_embeddings = torch.randn(4, LLM_DIM)
    superpoint_mask = torch.ones(B, TOY_S, dtype=torch.bool)
    token_mask = torch.ones(B, K, dtype=torch.bool)
    eval_batch = _toy_batch(concepts, token_embeddings)

    def evaluate() -> tuple[float, float]:
        states, features, targets = eval_batch
        with torch.no_grad():
            out = decoder(states, token_mask, features, superpoint_mask)
            loss = set_mask_loss(out, list(targets), None, MaskLossWeights(), match=False)
        return loss["total"].item(), _iou(out.mask_logits, targets)

    loss_before, iou_before = evaluate()
    for _ in range(120):
        states, features, targets = _toy_batch(concepts, token_embeddings)
        out = decoder(states, token_mask, features, superpoint_mask)
        loss = set_mask_loss(out, list(targets), None, MaskLossWeights(), match=False)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss_after, iou_after = evaluate()
    assert loss_after < 0.35 * loss_before
    assert iou_after > max(iou_before + 0.3, 0.8)
