"""Second process for the action tests: the r2s node on a tiny model that always names relevant
elements, whose worker the test can hold after stage 1 through stdin.

The model is the real tiny R2S model with its LM head biased towards [REL] and its score
threshold near zero, so stage 1 writes `max_relevant` [REL]s on any scene, each choosing a
proposal. For an instruction that starts with HOLD, the stage-1 hook first hands the elements on
(the node publishes its feedback), then prints `held <instruction>` and waits for a `release`
line on stdin before stage 2. The node takes the
usual --ros-args and exits on SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
import threading

import rclpy
import torch

from r2s_model.model import R2SModel
from r2s_ros.node import R2SNode, serve
from tests.model.tiny import HookedModel, OnRelevant, tiny_model

HOLD = "hold:"
RELEASE_TIMEOUT_S = 120.0


def eager_model() -> R2SModel:
    """Tiny R2S whose stage 1 always emits [REL] and whose stage 2 always answers a target."""
    model = tiny_model(seed=3, score_threshold=1e-6).eval()
    head = model.llm.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[model.prompts.ids["[REL]"]] = 1e4
    model.llm.lm_head = biased
    return model


class Holds:
    """The stage-1 hook of HOLD instructions: hands the elements on, then waits until stdin
    says `release`."""

    def __init__(self) -> None:
        self._releases = threading.Semaphore(0)
        threading.Thread(target=self._read_releases, daemon=True).start()

    def around(self, instruction: str, on_relevant: OnRelevant) -> OnRelevant:
        def stage1_done(relevant: list) -> None:
            if on_relevant is not None:
                on_relevant(relevant)
            if instruction.startswith(HOLD):
                print(f"held {instruction}", flush=True)
                if not self._releases.acquire(timeout=RELEASE_TIMEOUT_S):
                    raise RuntimeError("the test never released the worker")

        return stage1_done

    def _read_releases(self) -> None:
        while line := sys.stdin.readline():
            if line.strip() == "release":
                self._releases.release()


def main() -> int:
    rclpy.init(args=sys.argv)
    serve(R2SNode(model=HookedModel(eager_model(), Holds().around)))
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
