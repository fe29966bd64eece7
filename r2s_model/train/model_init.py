"""What both training stages share: the model they start from and the scene order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from r2s_model.checkpoint import read_weights
from r2s_model.model import R2SModel
from r2s_model.objects.checkpoint import load_parser
from r2s_model.train.config import TrainConfig


def build_model(config: TrainConfig) -> R2SModel:
    """A model around the frozen parser of `config.parser`, with the trainable state of the
    checkpoint `config.init_from` when one is given (the answer stage's, for grounding). The
    parser is always `config.parser`'s, the one whose outputs the stage trains on (the object
    cache), and the grounding stage starts its head fresh (the answer stage never trains it)."""
    parser = load_parser(Path(config.parser))
    model = R2SModel.build(dataclasses.replace(config.model, parser=parser.config))
    model.parser.load_state_dict(parser.state_dict())
    if config.init_from:
        fresh = ("parser.", "grounding.") if config.stage == "grounding" else ("parser.",)
        state = read_weights(Path(config.init_from))
        state = {k: v for k, v in state.items() if not k.startswith(fresh)}
        state |= {k: v for k, v in model.trainable_state().items() if k.startswith(fresh)}
        model.load_trainable_state(state)
    return model


def scene_at(scene_ids: list[str], seed: int, position: int) -> str:
    """Scene at `position` of an endless sequence of per-epoch shuffles of `scene_ids`."""
    epoch, index = divmod(position, len(scene_ids))
    order = np.random.default_rng([seed, epoch]).permutation(len(scene_ids))
    return scene_ids[order[index]]
