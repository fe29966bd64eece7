"""One scene in, its objects out: superpoints, the parser, the grouping, with timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from r2s_model.objects.graph import superpoint_adjacency
from r2s_model.objects.parser import ParsedScene, SceneParser
from r2s_model.objects.proposals import ObjectProposals, build_proposals
from r2s_model.superpoints import SuperpointParams, compute_superpoints


@dataclass
class SceneObjects:
    """superpoints (N,) int64 of the input points; parsed per superpoint; proposals."""

    superpoints: Tensor
    parsed: ParsedScene
    proposals: ObjectProposals
    timings_ms: dict[str, float] = field(default_factory=dict)

    def point_categories(self) -> np.ndarray:
        """(N,) int64 predicted category index of each point."""
        return self.parsed.semantic_logits.argmax(1)[self.superpoints].cpu().numpy()

    def point_objects(self) -> np.ndarray:
        """(N,) int64 proposal index of each point."""
        return self.proposals.point_objects(self.superpoints).cpu().numpy()


@torch.no_grad()
def detect_objects(
    parser: SceneParser,
    points: np.ndarray,
    colors: np.ndarray,
    superpoint_params: SuperpointParams,
    superpoints: np.ndarray | None = None,
) -> SceneObjects:
    """points (N, 3) float32 metres (finite), colors (N, 3) float32 in [0, 1]; superpoints
    (N,) contiguous ids when already known (else computed) -> SceneObjects."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if superpoints is None:
        superpoints = compute_superpoints(points, colors, superpoint_params)
        timings["superpoints"] = (time.perf_counter() - start) * 1000
    superpoints = np.asarray(superpoints, dtype=np.int64)
    start = time.perf_counter()
    count = int(superpoints.max()) + 1
    edges = superpoint_adjacency(points, superpoints, count, parser.config.adjacency_cell)
    device = next(parser.parameters()).device
    point_tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
    superpoint_tensor = torch.from_numpy(superpoints).to(device)
    parsed = parser(
        point_tensor,
        torch.from_numpy(np.ascontiguousarray(colors, dtype=np.float32)).to(device),
        superpoint_tensor,
        torch.zeros(len(points), dtype=torch.long, device=device),
        torch.from_numpy(edges).to(device),
    )
    timings["encode"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    proposals = build_proposals(
        parsed, point_tensor, superpoint_tensor, parser.config.link_threshold
    )
    timings["proposals"] = (time.perf_counter() - start) * 1000
    return SceneObjects(superpoint_tensor, parsed, proposals, timings)
