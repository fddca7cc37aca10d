"""Configs for tests, built from the shipped params.yaml: the one place defaults live.

``train_cfg(epochs=2, hidden=16)`` is the shipped SYN training config with two changes, so
a test states only what it changes, and a test of "the shipped BSeGN" sees what users run.
"""

from dataclasses import replace
from pathlib import Path

from bsegn.config import (ClassifyConfig, GenerateConfig, PrepareConfig, RealisticConfig, SyntheticConfig, TrainConfig,
                          download_config, load_params, prepare_config, stage_config)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


def train_cfg(dataset: str = "SYN", **changes) -> TrainConfig:
    return replace(stage_config(PARAMS, "train", dataset), **changes)


def generate_cfg(dataset: str = "SYN", **changes) -> GenerateConfig:
    return replace(stage_config(PARAMS, "generate", dataset), **changes)


def classify_cfg(dataset: str = "SYN", **changes) -> ClassifyConfig:
    return replace(stage_config(PARAMS, "classify", dataset), **changes)


def prepare_cfg(**changes) -> PrepareConfig:
    return replace(prepare_config(PARAMS), **changes)


def synthetic_cfg(dataset: str = "SYN", **changes) -> SyntheticConfig:
    return replace(download_config(PARAMS).sources[dataset].synthetic, **changes)


def realistic_cfg(dataset: str = "SYN_CUB", **changes) -> RealisticConfig:
    """A realistic benchmark's shipped config, its split folder resolved from the repo root."""
    cfg = download_config(PARAMS).sources[dataset].realistic
    return replace(cfg, **{"splits": str(ROOT / cfg.splits), **changes})


def baseline(cfg: TrainConfig) -> TrainConfig:
    """f-CLSWGAN: every BSeGN switch of ``cfg`` off."""
    return replace(cfg, fem=False, cycle=False, vae=False)
