"""What the per-seed stages share: the settings they run with, and the validation split's results.

A per-seed stage ``stages/<stage>.py`` loads its inputs (its settings with
:func:`stage_run_config`), calls one function, ``run_<stage>``, and writes what it returns.
Each ``run_<stage>`` lives beside the code it drives, so that a stage imports, and DVC reruns
it for, only what it uses: training in :mod:`bsegn.trainer` (``run_train``, ``run_train_val``),
sampling the trained model in :mod:`bsegn.model` (``run_generate``), the final classifiers in
:mod:`bsegn.evaluate` (``run_classify``); tests/test_dvc_wiring.py checks that each stage calls
its own. The in-process ablation (:mod:`bsegn.research.ablation`) calls the same functions in
the stages' order, so its numbers are the pipeline's by construction (``tests/test_pipeline.py``
checks two variants against ``dvc repro``).

Each function seeds the random number generators itself, right before its random work,
so what happens before it (loading a model builds networks, which draws initial weights)
cannot change its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import paths
from .config import (ClassifyConfig, GenerateConfig, TrainConfig, base_config, section_from_record, settings_records,
                     stage_config)
from .data import Benchmark
from .errors import PipelineError
from .io import load_json
from .model import GenerativeModel
from .runtime import resolve_device


@dataclass(frozen=True)
class RunConfig:
    """One dataset's settings for the per-seed stages, and the device they run on. A stage's
    own (:func:`stage_run_config`) holds only the sections it depends on; the others are None."""

    train: TrainConfig | None
    generate: GenerateConfig | None
    classify: ClassifyConfig | None
    device: torch.device


def run_config(params: dict, dataset: str) -> RunConfig:
    base = base_config(params)
    return RunConfig(stage_config(params, "train", dataset), stage_config(params, "generate", dataset),
                     stage_config(params, "classify", dataset), resolve_device(base.device, base.tf32))


# the settings sections each per-seed stage runs with: its deps runs/<DS>/settings/<section>.json
# in dvc.yaml (tests/test_dvc_wiring.py checks that they agree)
STAGE_SECTIONS = {"train": ("train",), "train_val": ("train", "generate"), "generate": ("generate",),
                  "classify": ("classify",)}


def stage_run_config(params: dict, dataset: str, stage: str) -> RunConfig:
    """The run config of per-seed ``stage``: its :data:`STAGE_SECTIONS` read from the files the
    settings stage wrote (``runs/<DS>/settings/<section>.json``, the stage's DVC deps), the
    other sections None, so the stage runs with exactly what it depends on.

    Each file must hold what ``params`` resolve to now: a stage run by hand after a params
    change, with no settings stage run in between, stops instead of using the old settings."""
    expected = settings_records(params, dataset)
    configs, base = {}, None
    for section in STAGE_SECTIONS[stage]:
        path = paths.settings(dataset, section)
        try:
            record = load_json(path)
        except FileNotFoundError:
            raise PipelineError(f"{path}: missing; {_WRITTEN_BY.format(ds=dataset)}") from None
        if record != expected[section]:
            raise PipelineError(f"{path}: written for other settings than the params now give "
                                f"({_first_difference(record, expected[section])}); {_WRITTEN_BY.format(ds=dataset)}")
        configs[section] = section_from_record(record, section, str(path))
        base = record["base"]
    return RunConfig(configs.get("train"), configs.get("generate"), configs.get("classify"),
                     resolve_device(base["device"], base["tf32"]))


_WRITTEN_BY = ("the settings stage writes it: `dvc repro` runs it first, or run "
               "`python -m stages.settings --dataset {ds}`")


def _first_difference(got, want, where: str = "") -> str:
    """``key: X in the file, Y in the params`` for the first key where ``got`` and ``want`` differ."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want), key=str):
            if got.get(key, _ABSENT) != want.get(key, _ABSENT):
                return _first_difference(got.get(key, _ABSENT), want.get(key, _ABSENT), f"{where}{key}.")
    def shown(value) -> str:
        return "absent" if value is _ABSENT else repr(value)
    return f"{where.rstrip('.')}: {shown(got)} in the file, {shown(want)} in the params"


_ABSENT = object()


def validation_syn_num(val: Benchmark, syn_num: int) -> int:
    """Synthetic features per held-out class on the validation split.

    The classifier's bias between the two domains, which the calibration constant and the
    classifier epochs chosen there correct, grows with the ratio of fakes per unseen class to
    real images per seen class. The validation split trains on only part of each seen class's
    images (the rest is its seen test set, ``prepare.val_seen_fraction``), so ``syn_num`` is
    scaled by that part to keep the test split's ratio; with ``syn_num`` itself, the
    validation classifier leans further to the unseen side and its choices over-correct
    (docs/METHOD.md, "Evaluation protocol"; docs/log/2026-11-28-validation-fakes-scaled.md).
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
