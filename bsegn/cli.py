"""What every stage entry point shares: argument parsing and friendly failure."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from .config import base_config, dataset_source, load_params
from .errors import PipelineError
from .io import save_json

# stage scripts import this module first, so this is about when the stage started (the
# Python interpreter's own start-up, some tens of milliseconds, is not counted)
STARTED = time.perf_counter()


def stage_args(description: str, per_seed: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, help="a dataset named in params.yaml download.sources")
    if per_seed:
        parser.add_argument("--seed", type=int, required=True, help="random seed of this run")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return parser.parse_args()


def load_checked(path: str, dataset: str) -> dict:
    """The params, with ``base`` validated and ``dataset`` known."""
    params = load_params(path)
    base_config(params)
    dataset_source(params, dataset)  # raises, naming the known datasets, if it has no source
    return params


def run(main: Callable[[], None]) -> None:
    """Run a stage; expected failures print one clear line and exit 2, not a traceback."""
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def save_seconds(path: str | Path) -> float:
    """Write ``{"seconds": wall time since the stage started}``: the stage's ``seconds`` metric.

    ``dvc exp show`` lists it beside the accuracy metrics. It is the one output that differs
    from run to run (docs/METHOD.md, "Fast training").
    """
    seconds = round(time.perf_counter() - STARTED, 2)
    save_json({"seconds": seconds}, path)
    return seconds
