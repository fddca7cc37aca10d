"""Where each stage reads and writes; dvc.yaml spells out the same layout."""

from __future__ import annotations

from pathlib import Path


def raw_dir(dataset: str) -> Path:
    return Path("data/raw") / dataset  # res101.mat, att_splits.mat, class lists, source.json


def prepared(dataset: str) -> Path:
    return Path("data/prepared") / f"{dataset}.npz"


def settings(dataset: str, section: str) -> Path:
    # what the per-seed stages of the dataset run with (stage settings), one file per section
    return Path("runs") / dataset / "settings" / f"{section}.json"


def run_dir(dataset: str, seed: int) -> Path:
    return Path("runs") / dataset / f"seed{seed}"


def model(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "model.pt"


def train_log(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "train_log.csv"


def synthetic_features(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "synthetic.npz"


def metrics(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "metrics.json"


def classify_log(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "classify_log.csv"


def val_model(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "val_model.pt"  # generator trained on the validation split


def val_synthetic(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "val_synthetic.npz"


def validation(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "validation.json"  # what classify chose on the validation split


def predictions(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed) / "predictions.npz"


def seconds(dataset: str, seed: int, stage: str) -> Path:
    return run_dir(dataset, seed) / f"{stage}_seconds.json"  # the stage's wall time and CPU vendor (not a metric)


def checkpoint(dataset: str, seed: int, stage: str) -> Path:
    # outside every DVC output: a resumable training state, deleted when the stage completes
    return Path(".cache/checkpoints") / dataset / f"seed{seed}" / f"{stage}.pt"
