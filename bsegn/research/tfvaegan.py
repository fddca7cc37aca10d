"""The comparison with the public TF-VAEGAN code (Narayan et al., ECCV 2020), run on our files.

TF-VAEGAN is not part of this project: it is fetched into a scratch folder outside the
repository and run there (docs/METHOD.md, "TF-VAEGAN", says how and which patches it needs
for today's PyTorch). This module holds only what makes that run reproducible and its
numbers comparable with ours:

* ``command DATASET --dataroot DIR``: its published command line for the benchmark the
  dataset is built on (the flags of its ``scripts/run_*_tfvaegan.py``), pointed at our
  files. The download stage already writes its layout: ``python -m stages.download --dataset
  SYN_CUB`` makes ``data/raw/SYN_CUB/res101.mat`` and ``att_splits.mat``, so DIR is ``data/raw``.
* ``collect DATASET=LOG ... [--out records/tfvaegan_runs.csv]``: its training log -> one row per
  evaluation, printed, and written where ``--out`` names a file;
  ``--realistic records/realistic.csv`` also puts each run's best evaluation there as a
  ``tfvaegan`` / ``test_selected`` row, replacing the earlier ones of that dataset, for runs
  that reached issue 8's minimum schedule (:data:`MIN_EPOCHS`).

Its protocol is test-selected by construction: each evaluation trains a fresh softmax
classifier for 25 epochs and keeps the epoch with the best test H (ZSL: best test accuracy),
and the run's best evaluation over generator epochs is what it reports. That is our
``test_selected`` protocol (best classifier epoch on test), with generator epochs selected too.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

from .. import config
from ..io import save_text
from ..report import PROTOCOL_COLUMNS, replace_rows
from .comparison import settled_runs

# Its published settings, from akshitac8/tfvaegan scripts/run_<name>_tfvaegan.py; the benchmark
# our dataset is built on picks the line (SYN_CUB -> CUB). "awa" is its AWA2 script.
PUBLISHED: dict[str, tuple[str, str]] = {
    "CUB": ("scripts/run_cub_tfvaegan.py",
            "--gammaD 10 --gammaG 10 --gzsl --manualSeed 3483 --encoded_noise --preprocessing --cuda "
            "--image_embedding res101 --class_embedding att --nepoch 300 --ngh 4096 --ndh 4096 --lr 0.0001 "
            "--classifier_lr 0.001 --lambda1 10 --critic_iter 5 --nclass_all 200 --batch_size 64 --nz 312 "
            "--latent_size 312 --attSize 312 --resSize 2048 --syn_num 300 --recons_weight 0.01 --a1 1 --a2 1 "
            "--feed_lr 0.00001 --dec_lr 0.0001 --feedback_loop 2"),
    "SUN": ("scripts/run_sun_tfvaegan.py",
            "--gammaD 1 --gammaG 1 --gzsl --manualSeed 4115 --encoded_noise --preprocessing --cuda "
            "--image_embedding res101 --class_embedding att --nepoch 400 --ngh 4096 --ndh 4096 --lambda1 10 "
            "--critic_iter 5 --batch_size 64 --nz 102 --latent_size 102 --attSize 102 --resSize 2048 --lr 0.001 "
            "--classifier_lr 0.0005 --syn_num 400 --nclass_all 717 --recons_weight 0.01 --a1 0.1 --a2 0.01 "
            "--feedback_loop 2 --feed_lr 0.0001"),
    "AWA2": ("scripts/run_awa_tfvaegan.py",
             "--gammaD 10 --gammaG 10 --gzsl --encoded_noise --manualSeed 9182 --preprocessing --cuda "
             "--image_embedding res101 --class_embedding att --nepoch 120 --syn_num 1800 --ngh 4096 --ndh 4096 "
             "--lambda1 10 --critic_iter 5 --nclass_all 50 --batch_size 64 --nz 85 --latent_size 85 --attSize 85 "
             "--resSize 2048 --lr 0.00001 --classifier_lr 0.001 --recons_weight 0.1 --freeze_dec --feed_lr 0.0001 "
             "--dec_lr 0.0001 --feedback_loop 2 --a1 0.01 --a2 0.01"),
    "FLO": ("scripts/run_flo_tfvaegan.py",
            "--gammaD 10 --gammaG 10 --gzsl --nclass_all 102 --latent_size 1024 --manualSeed 806 --syn_num 1200 "
            "--preprocessing --class_embedding att --nepoch 500 --ngh 4096 --ndh 4096 --lambda1 10 --critic_iter 5 "
            "--batch_size 64 --nz 1024 --attSize 1024 --resSize 2048 --lr 0.0001 --classifier_lr 0.001 --cuda "
            "--image_embedding res101 --recons_weight 0.01 --feedback_loop 2 --feed_lr 0.00001 --a1 0.5 --a2 0.5 "
            "--dec_lr 0.0001"),
}

# Issue 8's minimum schedule for a comparison row: at least 60 generator epochs (AWA2: 30),
# evaluated every 5. A run stopped short of it (a GPU lease ending) has only a lower bound of
# its own best H, so `collect --realistic` keeps it in the curves but writes no row for it.
MIN_EPOCHS: dict[str, int] = {"CUB": 60, "SUN": 60, "AWA2": 30, "FLO": 60}

# one epoch line of its log; evaluated epochs carry the GZSL and ZSL results, e.g.
# "[34/300]  Loss_D: ... time 495.9 s GZSL: seen=0.8043, unseen=0.4086, h=0.5419 ZSL: unseen accuracy=0.5219"
_EPOCH = re.compile(r"^\[(?P<epoch>\d+)/(?P<nepoch>\d+)\]")
_TIME = re.compile(r"time (?P<seconds>[\d.]+) s")
_EVAL = re.compile(r"GZSL: seen=(?P<S>[\d.]+), unseen=(?P<U>[\d.]+), h=(?P<H>[\d.]+) "
                   r"ZSL: unseen accuracy=(?P<T1>[\d.]+)")
_SEED = re.compile(r"^Random Seed:\s+(?P<seed>\d+)", re.MULTILINE)


def benchmark_of(dataset: str) -> str:
    """The published benchmark whose settings a dataset runs with: SYN_CUB -> CUB, AWA2 -> AWA2."""
    return config.published_benchmark(dataset, PUBLISHED, "TF-VAEGAN")


def command(dataset: str, dataroot: str, extra: list[str] | None = None) -> list[str]:
    """Its published ``train_images.py`` command for ``dataset``, reading ``dataroot/dataset``."""
    _, flags = PUBLISHED[benchmark_of(dataset)]
    return (["python", "train_images.py", *shlex.split(flags), "--dataroot", dataroot, "--dataset", dataset]
            + list(extra or []))


def parse_log(text: str, source: str = "log") -> pd.DataFrame:
    """Its log -> one row per evaluated epoch: epoch (1-based), seconds, T1, U, S, H (per-class %)."""
    rows = []
    for line in text.splitlines():
        head = _EPOCH.match(line)
        found = _EVAL.search(line)
        if not (head and found):
            continue
        seconds = _TIME.search(line)
        rows.append({"epoch": int(head["epoch"]) + 1, "nepoch": int(head["nepoch"]),
                     "seconds": float(seconds["seconds"]) if seconds else float("nan"),
                     **{k: 100 * float(found[k]) for k in ("T1", "U", "S", "H")}})
    if not rows:
        raise ValueError(f"{source}: no evaluated epoch found (expected lines like "
                         "'[4/300] ... GZSL: seen=0.88, unseen=0.09, h=0.16 ZSL: unseen accuracy=0.22')")
    return pd.DataFrame(rows)


def seed_of(text: str, source: str = "log") -> int:
    found = _SEED.search(text)
    if not found:
        raise ValueError(f"{source}: no 'Random Seed: N' line; is this a TF-VAEGAN train_images.py log?")
    return int(found["seed"])


def epochs_run(text: str) -> int:
    """Generator epochs completed: the last epoch line's index + 1 (0 if none)."""
    last = [int(m["epoch"]) + 1 for m in map(_EPOCH.match, text.splitlines()) if m]
    return max(last, default=0)


def collect(logs: dict[str, str]) -> pd.DataFrame:
    """``{dataset: log text}`` -> every evaluation, with the dataset, seed and epochs run."""
    frames = []
    for dataset, text in logs.items():
        benchmark_of(dataset)
        curve = parse_log(text, source=dataset)
        curve.insert(0, "seed", seed_of(text, source=dataset))
        curve.insert(0, "dataset", dataset)
        curve["epochs_run"] = epochs_run(text)
        frames.append(curve)
    return pd.concat(frames, ignore_index=True)


def long_enough(curves: pd.DataFrame) -> pd.Series:
    """Per evaluation: did its run reach :data:`MIN_EPOCHS` of its benchmark?"""
    needed = curves["dataset"].map(lambda ds: MIN_EPOCHS[benchmark_of(ds)])
    return curves["epochs_run"] >= needed


def best_evaluations(curves: pd.DataFrame) -> pd.DataFrame:
    """Each run's best-H evaluation, every column kept."""
    return curves.loc[curves.groupby(["dataset", "seed"])["H"].idxmax()].reset_index(drop=True)


def best_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The best-H evaluation of each run as ``records/realistic.csv`` rows (tfvaegan, test_selected)."""
    return best_evaluations(curves).assign(variant="tfvaegan", protocol="test_selected")[PROTOCOL_COLUMNS]


def published_epochs(dataset: str) -> int:
    """Its published ``--nepoch`` for the benchmark ``dataset`` is built on."""
    return int(re.search(r"--nepoch (\d+)", PUBLISHED[benchmark_of(dataset)][1]).group(1))


def public_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The best-H evaluation of each run that settled (:func:`bsegn.research.comparison.settled`:
    its published ``--nepoch``, or three evaluations without a new best) as ``records/methods.csv``
    rows (``tf-vaegan-public``, ``test_selected``); no DVC experiment (``experiment`` empty). A run
    stopped before has only a lower bound of its best, and no row."""
    best = best_evaluations(settled_runs(curves, published_epochs, reached="epochs_run"))
    best = best.assign(method="tf-vaegan-public", protocol="test_selected", experiment="")
    return best[["dataset", "method", "seed", "protocol", "T1", "U", "S", "H", "experiment"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("command", help="print its published command for a dataset")
    c.add_argument("dataset")
    c.add_argument("--dataroot", required=True, help="the folder holding DATASET/res101.mat and att_splits.mat")
    k = sub.add_parser("collect", help="its logs -> one row per evaluation (and realistic.csv rows)")
    k.add_argument("logs", nargs="+", metavar="DATASET=LOG")
    k.add_argument("--out", help="write the rows here (the record: records/tfvaegan_runs.csv; "
                                 "default: print them only)")
    k.add_argument("--realistic", help="also replace this CSV's tfvaegan rows with each run's best evaluation")
    k.add_argument("--public-out", help="also write each run's best evaluation as a records/methods.csv row "
                                        "(python -m bsegn.research.comparison --public)")
    args = parser.parse_args()

    try:
        if args.cmd == "command":
            script, _ = PUBLISHED[benchmark_of(args.dataset)]
            print(f"# akshitac8/tfvaegan {script}, run in its folder", file=sys.stderr)
            print(shlex.join(command(args.dataset, args.dataroot)))
            return
        pairs = [t.partition("=") for t in args.logs]
        bad = [t for t, (_, sep, path) in zip(args.logs, pairs) if not sep or not path]
        if bad:
            parser.error(f"expected DATASET=LOG, got {bad}")
        curves = collect({ds: Path(path).read_text() for ds, _, path in pairs})
    except (ValueError, OSError) as e:
        parser.error(str(e))
    print(curves.to_string(index=False))
    if args.out:  # a record is written over only where asked
        save_text(curves.to_csv(index=False, float_format="%.2f"), args.out)
        print(f"wrote {args.out}")
    print("best evaluation per run:")
    print(best_evaluations(curves).to_string(index=False))
    if args.public_out:
        save_text(public_rows(curves).to_csv(index=False, float_format="%.2f"), args.public_out)
        print(f"wrote {args.public_out}")
    if args.realistic:
        enough = long_enough(curves)
        for (ds, seed), run in curves[~enough].groupby(["dataset", "seed"]):
            print(f"{ds} (seed {seed}): {run['epochs_run'].iloc[0]} generator epochs run, "
                  f"{MIN_EPOCHS[benchmark_of(ds)]} needed; no row written for it", file=sys.stderr)
        best = best_rows(curves[enough])
        try:
            merged = replace_rows(pd.read_csv(args.realistic), best)
        except OSError as e:
            parser.error(f"--realistic {args.realistic}: {e.strerror or e}")
        save_text(merged.to_csv(index=False, float_format="%.2f"), args.realistic)
        print(f"wrote {len(best)} tfvaegan row(s) into {args.realistic}")


if __name__ == "__main__":
    main()
