"""What every stage entry point shares: argument parsing and friendly failure."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from .config import dataset_source, load_params, validate_all
from .errors import PipelineError
from .io import save_json
from .lifeline import parent_gone, watch_parent

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
    """The params, every section validated for every listed dataset, and ``dataset`` known.

    The whole file is checked by every stage, so under ``dvc repro`` a typo in, say,
    ``classify.common`` stops the very first stage (download) within seconds, not the
    classify stage after hours of training.
    """
    params = load_params(path)
    dataset_source(params, dataset)  # raises, naming the known datasets, if it has no source
    validate_all(params)
    return params


class _ParentGone(BaseException):
    """SIGTERM, sent by the kernel when the process that started this stage (dvc) has died."""


def _stop_on_sigterm() -> None:
    """From here on SIGTERM (a dead parent, or a plain ``kill``) becomes a clean stop.
    The parent-death request itself is made by ``stages/__init__.py``; made again here for
    callers outside ``stages/`` (it is done once per process)."""
    def stop(signum, frame):
        raise _ParentGone()
    watch_parent()
    signal.signal(signal.SIGTERM, stop)


# What a stopped stage can truthfully say: its own outputs are written atomically, so it left no
# half-written file; but DVC deletes a stage's previous outputs before it starts the stage.
_NOTHING_WRITTEN = ("this stage wrote nothing, but DVC had removed its previous outputs before starting it: "
                    "`dvc checkout` brings back the last recorded ones, `dvc repro` makes them again")


def run(main: Callable[[], None]) -> None:
    """Run a stage; expected failures print one clear line and exit 2 (130 when interrupted,
    143 when stopped by SIGTERM), never a traceback, and never a half-written output."""
    _stop_on_sigterm()
    try:
        if parent_gone():
            raise _ParentGone()
        main()
    except _ParentGone:
        print(f"error: stopped by SIGTERM (the dvc process that started this stage has ended?); {_NOTHING_WRITTEN}",
              file=sys.stderr)
        sys.exit(143)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"error: interrupted; {_NOTHING_WRITTEN}", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # permissions, a full disk, a file where a folder belongs, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)


def cpu_vendor() -> str:
    """The CPU's vendor as the kernel names it (``GenuineIntel``, ``AuthenticAMD``), or
    ``unknown``. MKL takes other code paths on other vendors' CPUs, whatever ``MKL_CBWR`` says,
    so CPU bytes are reproducible between CPUs of one vendor, not across vendors
    (docs/usage.md, "Reproducibility and speed")."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def save_seconds(path: str | Path) -> float:
    """Write ``{"seconds": wall time since the stage started, "cpu": the CPU's vendor}``.

    The one output that differs from run to run; cached by DVC like the stage's other outputs (so
    its run-cache works) and gathered, git-tracked, in reports/runs.csv. The vendor says which CPUs
    a committed result reproduces on byte for byte (tests/test_reproducible.py).
    """
    seconds = round(time.perf_counter() - STARTED, 2)
    save_json({"seconds": seconds, "cpu": cpu_vendor()}, path)
    return seconds
