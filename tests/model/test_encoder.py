"""Voxelization, superpoint pooling and the sparse U-Net scene encoder, on real spconv (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2s_model.encoder import EncoderConfig, SceneEncoder, superpoint_pool, voxelize
from r2s_model.superpoints import compute_superpoints
from tests.model.scenes import make_box_scene

# Small enough to keep CPU tests fast, deep enough to exercise down/up-sampling and skips.
SMALL = EncoderConfig(voxel_size=0.05, widths=(16, 24, 32), blocks_per_level=1)


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Run each test on one CPU thread, then restore the previous count.

    spconv's CPU path launches thousands of tiny OpenMP regions per step; when another process
    holds a core, every barrier waits a scheduler slice and these small tests slow down 100x.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scene_tensors(seed: int, num_points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    points, colors, _ = make_box_scene(seed, num_points)
    superpoints = compute_superpoints(points, colors)
    return torch.from_numpy(points), torch.from_numpy(colors), torch.from_numpy(superpoints)


def _batch_of(
    scenes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate scenes, offsetting superpoint ids so they are global over the batch."""
    offsets = np.cumsum([0] + [int(sp.max()) + 1 for _, _, sp in scenes])
    return (
        torch.cat([p for p, _, _ in scenes]),
        torch.cat([c for _, c, _ in scenes]),
        torch.cat([sp + int(offset) for (_, _, sp), offset in zip(scenes, offsets, strict=False)]),
        torch.cat([torch.full((len(p),), b) for b, (p, _, _) in enumerate(scenes)]),
    )


def test_voxelize_hand_case() -> None:
    points = torch.tensor(
        [[1.00, 2.00, 3.00], [1.05, 2.05, 3.05], [1.55, 2.00, 3.00], [7.0, 7.0, 7.0]]
    )
    features = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [9.0, 9.0]])
    batch = torch.tensor([0, 0, 0, 1])

    grid = voxelize(points, features, batch, voxel_size=0.1)

    assert grid.coords.dtype == torch.int32
    assert grid.features.dtype == torch.float32
    assert grid.point_to_voxel.dtype == torch.int64
    # Each scene is gridded from its own minimum corner.
    assert grid.coords.tolist() == [[0, 0, 0, 0], [0, 5, 0, 0], [1, 0, 0, 0]]
    assert grid.point_to_voxel.tolist() == [0, 0, 1, 2]
    torch.testing.assert_close(grid.features, torch.tensor([[2.0, 1.0], [5.0, 5.0], [9.0, 9.0]]))
    assert grid.spatial_shape == [6, 1, 1]
    assert grid.batch_size == 2


def test_voxelize_empty() -> None:
    grid = voxelize(torch.zeros(0, 3), torch.zeros(0, 6), torch.zeros(0, dtype=torch.long), 0.1)
    assert grid.coords.shape == (0, 4)
    assert grid.features.shape == (0, 6)
    assert grid.batch_size == 0


def test_superpoint_pool_hand_case() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    pooled = superpoint_pool(values, torch.tensor([0, 0, 2]), num_superpoints=4)
    torch.testing.assert_close(
        pooled, torch.tensor([[2.0, 3.0], [0.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    )


def test_scene_encoder_batch_shapes_and_geometry() -> None:
    torch.manual_seed(0)
    points, colors, superpoints, batch = _batch_of(
        [_scene_tensors(0, 6000), _scene_tensors(1, 4000)]
    )
    num_superpoints = int(superpoints.max()) + 1
    encoder = SceneEncoder(SMALL)

    out = encoder(points, colors, superpoints, batch)

    assert encoder.out_dim == SMALL.widths[0]
    assert out.features.shape == (num_superpoints, SMALL.widths[0])
    assert out.features.dtype == torch.float32
    assert torch.isfinite(out.features).all()
    assert out.centroids.shape == out.extents.shape == (num_superpoints, 3)
    assert out.point_counts.dtype == out.batch.dtype == torch.int64
    assert out.point_counts.sum() == len(points)
    first_of_scene_1 = int(superpoints[batch == 1].min())
    assert out.batch.tolist() == [0] * first_of_scene_1 + [1] * (num_superpoints - first_of_scene_1)
    one = int(superpoints[0])
    members = points[superpoints == one]
    torch.testing.assert_close(out.centroids[one], members.mean(0))
    torch.testing.assert_close(out.extents[one], members.max(0).values - members.min(0).values)


def test_scenes_do_not_mix() -> None:
    torch.manual_seed(0)
    scene_a, scene_b = _scene_tensors(2, 5000), _scene_tensors(3, 5000)
    encoder = SceneEncoder(SMALL).eval()
    with torch.no_grad():
        alone = encoder(*scene_a, torch.zeros(len(scene_a[0]), dtype=torch.long))
        together = encoder(*_batch_of([scene_a, scene_b]))
    num_a = len(alone.features)
    torch.testing.assert_close(together.features[:num_a], alone.features, atol=1e-5, rtol=1e-4)


def test_scene_encoder_empty_input() -> None:
    empty = torch.zeros(0, 3)
    none = torch.zeros(0, dtype=torch.long)
    out = SceneEncoder(SMALL)(empty, empty, none, none)
    assert out.features.shape == (0, SMALL.widths[0])
    assert out.centroids.shape == out.extents.shape == (0, 3)
    assert out.point_counts.shape == out.batch.shape == (0,)


def test_superpoint_spanning_two_scenes_is_rejected() -> None:
    points, colors, superpoints, batch = _batch_of(
        [_scene_tensors(0, 2000), _scene_tensors(1, 2000)]
    )
    superpoints[batch == 1] = 0
    with pytest.raises(ValueError, match="more than one scene"):
        SceneEncoder(SMALL)(points, colors, superpoints, batch)


def test_translation_changes_only_centroids() -> None:
    torch.manual_seed(0)
    points, colors, superpoints = _scene_tensors(4, 6000)
    # Points on a 2^-10 m grid and an integer shift keep float32 sums exact, so every point
    # lands in the same voxel after the shift; only the centred xyz can differ by rounding.
    points = torch.round(points * 1024) / 1024
    shift = torch.tensor([5.0, -3.0, 2.0])
    batch = torch.zeros(len(points), dtype=torch.long)
    encoder = SceneEncoder(SMALL)

    with torch.no_grad():
        base = encoder(points, colors, superpoints, batch)
        moved = encoder(points + shift, colors, superpoints, batch)

    torch.testing.assert_close(moved.features, base.features, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(moved.centroids, base.centroids + shift)
    torch.testing.assert_close(moved.extents, base.extents, atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter_on_cpu() -> None:
    torch.manual_seed(0)
    points, colors, superpoints, batch = _batch_of(
        [_scene_tensors(5, 5000), _scene_tensors(6, 3000)]
    )
    encoder = SceneEncoder(SMALL)
    out = encoder(points, colors, superpoints, batch)
    (out.features * torch.randn_like(out.features)).sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_adam_steps_reduce_a_regression_loss() -> None:
    torch.manual_seed(0)
    points, colors, superpoints = _scene_tensors(7, 3000)
    batch = torch.zeros(len(points), dtype=torch.long)
    encoder = SceneEncoder(SMALL)
    head = torch.nn.Linear(encoder.out_dim, 1)
    # Regress each superpoint's mean height: learnable from the centred-xyz input channels.
    target = encoder(points, colors, superpoints, batch).centroids[:, 2:].detach()
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)

    losses = []
    for _ in range(25):
        loss = torch.nn.functional.mse_loss(
            head(encoder(points, colors, superpoints, batch).features), target
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < 0.3 * losses[0], losses


def test_default_config_forward_and_backward() -> None:
    torch.manual_seed(0)
    points, colors, superpoints = _scene_tensors(8, 8000)
    batch = torch.zeros(len(points), dtype=torch.long)
    encoder = SceneEncoder(EncoderConfig())
    out = encoder(points, colors, superpoints, batch)
    assert out.features.shape == (int(superpoints.max()) + 1, EncoderConfig().widths[0])
    out.features.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    points, colors, superpoints = _scene_tensors(9, 5000)
    batch = torch.zeros(len(points), dtype=torch.long)
    encoder = SceneEncoder(SMALL).eval()
    with torch.no_grad():
        on_cpu = encoder(points, colors, superpoints, batch)
        on_cuda = encoder.cuda()(points.cuda(), colors.cuda(), superpoints.cuda(), batch.cuda())
    assert on_cuda.features.device.type == "cuda"
    torch.testing.assert_close(on_cuda.features.cpu(), on_cpu.features, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(on_cuda.centroids.cpu(), on_cpu.centroids)
