"""One function per per-seed stage: what the stage computes, from in-memory inputs.

==========  ===================================  ==========================
stage       function                             returns
==========  ===================================  ==========================
train       :func:`bsegn.trainer.run_train`      model, loss log
generate    :func:`run_generate` (here)          synthetic unseen features
train_val   :func:`bsegn.trainer.run_train_val`  :class:`Validation`
classify    :func:`bsegn.evaluate.run_classify`  metrics, curve, predictions
==========  ===================================  ==========================

The DVC stages (``stages/``) load their inputs, call their function and write the results;
the in-process ablation (:mod:`bsegn.ablation`) calls the same functions in the stages'
order, so its numbers are the pipeline's by construction (``tests/test_pipeline.py`` checks
two variants against ``dvc repro``). The train and classify functions live beside the code
they drive, so that a stage imports, and DVC reruns it for, only what it uses.

Each function seeds the random number generators itself, right before its random work,
so what happens before it (loading a model builds networks, which draws initial weights)
cannot change its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import ClassifyConfig, GenerateConfig, TrainConfig, base_config, stage_config
from .data import Benchmark
from .model import GenerativeModel, generate
from .runtime import resolve_device, seed_everything


@dataclass(frozen=True)
class RunConfig:
    """One dataset's settings for the per-seed stages, and the device they run on."""

    train: TrainConfig
    generate: GenerateConfig
    classify: ClassifyConfig
    device: torch.device


def run_config(params: dict, dataset: str) -> RunConfig:
    base = base_config(params)
    return RunConfig(stage_config(params, "train", dataset), stage_config(params, "generate", dataset),
                     stage_config(params, "classify", dataset), resolve_device(base.device, base.tf32))


def run_generate(bench: Benchmark, model: GenerativeModel, run: RunConfig, seed: int,
                 syn_num: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage ``generate``: ``syn_num`` (default ``generate.syn_num``) synthetic features per
    unseen class (x, class ids)."""
    seed_everything(seed)
    x, y = generate(model, torch.as_tensor(bench.att, device=run.device),
                    torch.as_tensor(bench.unseen, device=run.device), run.generate.syn_num if syn_num is None else syn_num)
    return x.cpu().numpy(), y.cpu().numpy()


def validation_syn_num(val: Benchmark, syn_num: int) -> int:
    """Synthetic features per held-out class on the validation split.

    The classifier's bias between the two domains, which the calibration constant and the
    classifier epochs chosen there correct, grows with the ratio of fakes per unseen class to
    real images per seen class. The validation split trains on only part of each seen class's
    images (the rest is its seen test set, ``prepare.val_seen_fraction``), so ``syn_num`` is
    scaled by that part to keep the test split's ratio; with ``syn_num`` itself, the
    validation classifier leans further to the unseen side and its choices over-correct
    (docs/METHOD.md, "Calibration").
    """
    share = len(val.train_y) / (len(val.train_y) + len(val.test_seen_y))
    return max(1, round(syn_num * share))


@dataclass
class Validation:
    """Stage ``train_val``'s results: the generator trained on the validation split and its
    synthetic features for the validation classes."""

    bench: Benchmark
    model: GenerativeModel
    syn_x: np.ndarray
    syn_y: np.ndarray
