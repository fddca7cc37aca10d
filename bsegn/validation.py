"""Decisions taken on the class-level validation split, never on test data.

The generative model is retrained on the validation split (the seen classes minus the
held-out validation classes, which play the unseen role) and synthetic features are made
for the validation classes (:func:`train_on_validation`, stage ``train_val``). The
classify stage then fits its classifiers on that split and reads off the per-epoch
validation curve (:func:`bsegn.evaluate.choose_on_validation`): the classifier epoch
counts (``classify.select_epochs: val``) and the calibrated-stacking constant
(``classify.calibration``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import GenerateConfig, TrainConfig
from .data import Benchmark
from .runtime import seed_everything
from .trainer import GenerativeModel, generate, train


def train_on_validation(val: Benchmark, train_cfg: TrainConfig, gen_cfg: GenerateConfig, seed: int,
                        device: torch.device, label: str = "train_val",
                        checkpoint_path: Path | None = None) -> tuple[GenerativeModel, torch.Tensor, torch.Tensor]:
    """The generator trained on the validation split and its features for the validation classes."""
    seed_everything(seed)
    model, _ = train(val, train_cfg, device, label=label, checkpoint_path=checkpoint_path)
    seed_everything(seed)
    x, y = generate(model, torch.as_tensor(val.att, device=device), torch.as_tensor(val.unseen, device=device),
                    gen_cfg.syn_num)
    return model, x, y
