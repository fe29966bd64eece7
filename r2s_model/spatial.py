"""Explicit position and size encodings for superpoints and objects.

R²S observes that LLMs under-use exact positions and sizes when these are only implicit in
point features, so they are given explicitly: position normalised to the scene box and log-size,
each expanded into Fourier features and linearly projected.
"""

import math

import torch
from torch import Tensor, nn

# Superpoints thinner than this are sensor noise; the clamp also keeps log() finite for padding.
_MIN_EXTENT_M = 0.01
# Maps log-extents of 1 cm ... 20 m to about [-0.92, 0.6], inside [-1, 1] where the lowest
# frequency (pi/2) is still injective, so every size gets a unique code.
_LOG_SIZE_SCALE = 5.0
_MIN_SCENE_SIZE_M = 1e-3


class SpatialEncoding(nn.Module):
    """Fourier encoding of (position in scene box, log-size) followed by a linear layer."""

    def __init__(self, out_dim: int, num_frequencies: int = 8) -> None:
        super().__init__()
        self.num_frequencies = num_frequencies
        # 6 coordinates (xyz position, xyz log-size), each kept raw plus sin and cos per frequency.
        self.proj = nn.Linear(6 * (1 + 2 * num_frequencies), out_dim)

    def forward(
        self, centroids: Tensor, extents: Tensor, scene_min: Tensor, scene_max: Tensor
    ) -> Tensor:
        """Encode boxes.

        Args:
            centroids: (B, S, 3) float, box centres in metres.
            extents: (B, S, 3) float, box side lengths in metres.
            scene_min: (B, 3) float, lower corner of the scene box.
            scene_max: (B, 3) float, upper corner of the scene box.

        Returns:
            (B, S, out_dim) in the dtype of the projection weights. Translating centroids and
            scene box together leaves the encoding unchanged; padded entries stay finite.
        """
        # Trigonometry at high frequencies needs float32 even when the model runs in half precision.
        low = scene_min.float()[:, None, :]
        size = (scene_max.float()[:, None, :] - low).clamp_min(_MIN_SCENE_SIZE_M)
        position = 2.0 * (centroids.float() - low) / size - 1.0
        log_size = torch.log(extents.float().clamp_min(_MIN_EXTENT_M)) / _LOG_SIZE_SCALE
        coords = torch.cat([position, log_size], dim=-1)

        exponents = torch.arange(self.num_frequencies, device=coords.device, dtype=coords.dtype)
        frequencies = (math.pi / 2.0) * torch.pow(2.0, exponents)
        angles = (coords[..., None] * frequencies).flatten(-2)
        fourier = torch.cat([coords, angles.sin(), angles.cos()], dim=-1)
        return self.proj(fourier.to(self.proj.weight.dtype))
