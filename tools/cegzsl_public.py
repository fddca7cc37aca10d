#!/usr/bin/env python3
"""The public CE-GZSL code (Han et al., CVPR 2021, github Hanzy1996/CE-GZSL), run on our files as a reference.

CE-GZSL is not part of this project and its code never enters the repository. It runs from a
scratch copy in the git-ignored ``.scratch/cegzsl/`` (the folder travels to the GPU machine by
path), built as for TF-VAEGAN (``bsegn/research/tfvaegan.py``, docs/METHOD.md "TF-VAEGAN"):

1. ``fetch github:Hanzy1996/CE-GZSL`` (a bare git dir under /work/.mirror), then
   ``bash .scratch/cegzsl/setup.sh [GIT_DIR]``: copies its code files unchanged into
   ``.scratch/cegzsl/pristine/`` and builds ``.scratch/cegzsl/code/`` = pristine + patches, written
   to ``code/PATCHES.diff``. The patches change none of its settings or losses; every new flag is
   off by default:
   P1 sklearn's MinMaxScaler/StandardScaler -> numpy, same formulas (MinMaxScaler: bit-identical
      output to scikit-learn 1.9 on SYN_CUB and SYN_AWA2), so it needs no scikit-learn, which the GPU
      machine is not promised to have (its list: torch, numpy, scipy, pandas, pyyaml).
   P2 ``import h5py`` only if installed (used by its ImageNet/.hdf5 readers only).
   P3 ``train_loc``/``val_loc`` read only with ``--validation`` (our SYN_CUB att_splits.mat has none).
   P4 ``--no_cuda`` (its ``--cuda`` is store_true with default True), and the 5 hard-coded ``.cuda()``
      of its class-score functions -> ``.to(embed.device)``.
   P5 ``--eval_every K``: evaluate every K-th epoch and at the last one (to fit a GPU lease).
   P6 ``--zsl_too``: after each GZSL evaluation also its own conventional-ZSL evaluation (its
      ``else`` branch), random states restored after it; its GZSL mode logs no ZSL accuracy.
   P7 a line ``epoch E time: train X s, eval Y s`` per epoch.
   P8 ``--cls_in_matrix``: its own ``class_scores_in_matrix`` instead of ``class_scores_for_loop``
      (the same loss, one batched call instead of a Python loop over the batch; faster, more memory).
2. ``python -m stages.download --dataset SYN_CUB`` writes ``data/raw/SYN_CUB/res101.mat`` and
   ``att_splits.mat`` (xlsa17 layout, which its loader reads), so ``--dataroot`` is ``data/raw``.
3. ``python tools/cegzsl_public.py command SYN_CUB --dataroot $PWD/data/raw [--nepoch N]
   [--eval-every K] [--seed S]`` prints its published command line for the benchmark the
   dataset is built on (SYN_CUB -> CUB ...), with attSize, nz, nclass_all, nclass_seen read
   from our files, ``--class_embedding att`` and ``--zsl_too``; run it in ``.scratch/cegzsl/code``
   (``.scratch/cegzsl/run.sh DATASET NEPOCH SEED OUTLOG`` does both steps).
4. ``python tools/cegzsl_public.py collect SYN_CUB=cub.log [--out best.csv] [--curves all.csv]``:
   its log -> one row per evaluation (dataset, method, seed, epoch, T1, U, S, H, per-class %),
   and per run its best-H evaluation as a ``ce-gzsl-public`` / ``test_selected`` row. T1 is the
   ZSL accuracy its log reports at that evaluation (``--zsl_too``; each ZSL evaluation keeps its
   classifier's best test epoch), empty if the log has none.

Published settings: only CUB has a full command (README.md line 49, with ``--class_embedding
sent``: CUB's 1024-d sentence embeddings, which our files lack, so ``att``, 312-d, is used). AWA2,
SUN and FLO have only the author's "key parameters" (issue #2, comment 874472906, 2021-07-06:
seed, nz, syn_num, nhF, ins_weight, cls_weight, lr, lr_decay_epoch, epochs); their other flags
are the README line's (= the code's defaults). The README line sets no ``--nepoch`` (default
2000); the epochs here are the author's (same comment; issue #15): CUB 450, AWA2 130, FLO 750,
SUN 1000. Its protocol is test-selected: every evaluation trains a fresh classifier (25 epochs)
and keeps its best test H, and the best evaluation of the run is what it reports.

Sizes are read from the files by the pipeline's own readers (bsegn.data); run it from the repository.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repository: bsegn
from bsegn import config, data  # noqa: E402
from bsegn.research.comparison import settled_runs  # noqa: E402

METHOD = "ce-gzsl-public"

# benchmark -> (source, flags not depending on our files, epochs, nz rule). The README's CUB line
# minus --dataset/--class_embedding/--attSize/--nz/--nclass_all/--nclass_seen (read from our files).
_README = "README.md:49"
_ISSUE = "issues/2#issuecomment-874472906"
PUBLISHED: dict[str, dict] = {
    "CUB": {"source": f"{_README}; epochs {_ISSUE}",
            "flags": "--syn_num 100 --batch_size 2048 --embedSize 2048 --outzSize 512 --nhF 2048 "
                     "--ins_weight 0.001 --cls_weight 0.001 --ins_temp 0.1 --cls_temp 0.1 --manualSeed 3483",
            "nepoch": 450, "nz": "attSize"},
    "AWA2": {"source": f"{_ISSUE} (other flags {_README})",
             "flags": "--syn_num 2400 --batch_size 2048 --embedSize 2048 --outzSize 512 --nhF 2048 "
                      "--ins_weight 0.001 --cls_weight 0.001 --ins_temp 0.1 --cls_temp 0.1 --manualSeed 9182 "
                      "--lr 0.0001 --lr_decay_epoch 10",
             "nepoch": 130, "nz": "attSize"},
    "SUN": {"source": f"{_ISSUE} (other flags {_README})",
            "flags": "--syn_num 100 --batch_size 2048 --embedSize 2048 --outzSize 512 --nhF 1024 "
                     "--ins_weight 0.01 --cls_weight 0.01 --ins_temp 0.1 --cls_temp 0.1 --manualSeed 4115 "
                     "--lr 0.00005 --lr_decay_epoch 100",
            "nepoch": 1000, "nz": "attSize"},
    "FLO": {"source": f"{_ISSUE} (other flags {_README})",
            "flags": "--syn_num 600 --batch_size 2048 --embedSize 2048 --outzSize 512 --nhF 1024 "
                     "--ins_weight 0.01 --cls_weight 0.01 --ins_temp 0.1 --cls_temp 0.1 --manualSeed 806 "
                     "--lr 0.0001 --lr_decay_epoch 100",
            "nepoch": 750, "nz": 512},
}
RES_SIZE_DEFAULT = 2048  # its --resSize default, which the README line keeps


def benchmark_of(dataset: str) -> str:
    """The published benchmark whose settings a dataset runs with: SYN_CUB -> CUB, AWA2 -> AWA2."""
    return config.published_benchmark(dataset, PUBLISHED, "CE-GZSL")


def sizes(dataroot: str | Path, dataset: str) -> dict[str, int]:
    """resSize, attSize, nclass_all, nclass_seen of ``dataroot/dataset`` as its loader reads them,
    read and checked by the pipeline's own readers (:mod:`bsegn.data`)."""
    folder = Path(dataroot) / dataset
    splits, _ = data.read_splits(folder)
    features, labels = data.read_features(folder, len(splits.att))
    return {"resSize": features.shape[1], "attSize": splits.att.shape[1], "nclass_all": len(splits.att),
            "nclass_seen": len(np.unique(labels[splits.trainval]))}


def command(dataset: str, dataroot: str, nepoch: int | None = None, eval_every: int | None = None,
            seed: int | None = None, zsl_too: bool = True) -> list[str]:
    """Its published ``CE_GZSL.py`` command for ``dataset``, reading ``dataroot/dataset``."""
    pub = PUBLISHED[benchmark_of(dataset)]
    size = sizes(dataroot, dataset)
    nz = size["attSize"] if pub["nz"] == "attSize" else pub["nz"]
    cmd = ["python3", "CE_GZSL.py", "--dataset", dataset, "--dataroot", dataroot, "--class_embedding", "att",
           *shlex.split(pub["flags"]), "--attSize", str(size["attSize"]), "--nz", str(nz),
           "--nclass_all", str(size["nclass_all"]), "--nclass_seen", str(size["nclass_seen"]),
           "--nepoch", str(nepoch or pub["nepoch"])]
    if size["resSize"] != RES_SIZE_DEFAULT:
        cmd += ["--resSize", str(size["resSize"])]
    if seed is not None:
        cmd[cmd.index("--manualSeed") + 1] = str(seed)
    if eval_every and eval_every > 1:
        cmd += ["--eval_every", str(eval_every)]
    if zsl_too:
        cmd += ["--zsl_too"]
    return cmd


# ---- its log ---------------------------------------------------------------------------------------
# "[12/450] Loss_D: ..." opens an epoch (0-based); then, where evaluated, its GZSL line
# "unseen=0.1234, seen=0.5678, h=0.2345", with --zsl_too its ZSL line "unseen class accuracy=0.4567 ",
# and (patch P7) "epoch 12 time: train 10.1 s, eval 5.2 s".
_EPOCH = re.compile(r"^\[(?P<epoch>\d+)/(?P<nepoch>\d+)\] Loss_D:")
_GZSL = re.compile(r"^unseen=(?P<U>[\d.]+), seen=(?P<S>[\d.]+), h=(?P<H>[\d.]+)")
_ZSL = re.compile(r"^unseen class accuracy=(?P<T1>[\d.]+)")
_TIME = re.compile(r"^epoch (?P<epoch>\d+) time: train (?P<train>[\d.]+) s(?:, eval (?P<eval>[\d.]+) s)?")
_SEED = re.compile(r"^Random Seed:\s+(?P<seed>\d+)", re.MULTILINE)
_DATASET = re.compile(r"^Namespace\(.*\bdataset='(?P<dataset>[^']*)'", re.MULTILINE)


def parse_log(text: str, source: str = "log") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Its log -> (evaluations: epoch (1-based), T1, U, S, H in per-class %; epoch times in s)."""
    evals: dict[int, dict] = {}
    times = []
    epoch = None
    for line in text.splitlines():
        line = line.strip()
        if m := _EPOCH.match(line):
            epoch = int(m["epoch"]) + 1
        elif (m := _GZSL.match(line)) and epoch is not None:
            evals.setdefault(epoch, {"T1": math.nan}).update({k: 100 * float(m[k]) for k in ("U", "S", "H")})
        elif (m := _ZSL.match(line)) and epoch is not None:
            evals.setdefault(epoch, {"U": math.nan, "S": math.nan, "H": math.nan})["T1"] = 100 * float(m["T1"])
        elif m := _TIME.match(line):
            times.append({"epoch": int(m["epoch"]) + 1, "train_s": float(m["train"]),
                          "eval_s": float(m["eval"]) if m["eval"] else math.nan})
    if not evals:
        raise ValueError(f"{source}: no evaluation found (expected '[E/N] Loss_D: ...' lines followed by "
                         "'unseen=0.1, seen=0.5, h=0.2'); is this a CE_GZSL.py log?")
    curve = pd.DataFrame([{"epoch": k, **v} for k, v in sorted(evals.items())])[["epoch", "T1", "U", "S", "H"]]
    return curve, pd.DataFrame(times, columns=["epoch", "train_s", "eval_s"])


def seed_of(text: str, source: str = "log") -> int:
    found = _SEED.search(text)
    if not found:
        raise ValueError(f"{source}: no 'Random Seed: N' line; is this a CE_GZSL.py log?")
    return int(found["seed"])


def collect(logs: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``{dataset: log text}`` -> (every evaluation, every epoch's time), with dataset, method, seed."""
    curves, clocks = [], []
    for dataset, text in logs.items():
        benchmark_of(dataset)
        named = _DATASET.search(text)
        if named and named["dataset"] != dataset:
            raise ValueError(f"{dataset}: that log ran --dataset {named['dataset']}")
        seed = seed_of(text, source=dataset)
        curve, clock = parse_log(text, source=dataset)
        for frame in (curve, clock):
            frame.insert(0, "seed", seed)
            frame.insert(0, "method", METHOD)
            frame.insert(0, "dataset", dataset)
        curves.append(curve)
        clocks.append(clock)
    return pd.concat(curves, ignore_index=True), pd.concat(clocks, ignore_index=True)


def best_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The best-H evaluation of each run that settled (:func:`bsegn.research.comparison.settled`:
    its published epochs, or three evaluations without a new best) as a ``ce-gzsl-public`` /
    ``test_selected`` row; a run stopped before has only a lower bound of its best, and no row."""
    scored = curves.dropna(subset=["H"])
    if scored.empty:
        raise ValueError("no GZSL evaluation (U, S, H) in the logs")
    scored = settled_runs(scored, lambda ds: PUBLISHED[benchmark_of(ds)]["nepoch"], reached="epoch")
    best = scored.loc[scored.groupby(["dataset", "seed"])["H"].idxmax()].reset_index(drop=True)
    return best.assign(protocol="test_selected", experiment="")[
        ["dataset", "method", "seed", "protocol", "T1", "U", "S", "H", "experiment"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("command", help="print its published command for a dataset")
    c.add_argument("dataset")
    c.add_argument("--dataroot", required=True, help="the folder holding DATASET/res101.mat and att_splits.mat")
    c.add_argument("--nepoch", type=int, help="cap the generator epochs (default: the published count)")
    c.add_argument("--eval-every", type=int, help="evaluate every K epochs and at the last (patch P5)")
    c.add_argument("--seed", type=int, help="its --manualSeed (default: the published seed)")
    c.add_argument("--no-zsl-too", dest="zsl_too", action="store_false",
                   help="leave out --zsl_too (patch P6): the log then has no T1")
    k = sub.add_parser("collect", help="its logs -> one row per evaluation, and each run's best-H row")
    k.add_argument("logs", nargs="+", metavar="DATASET=LOG")
    k.add_argument("--out", help="write each run's best-H row (test_selected) to this CSV")
    k.add_argument("--curves", help="write every evaluation's row to this CSV")
    args = parser.parse_args()

    try:
        if args.cmd == "command":
            pub = PUBLISHED[benchmark_of(args.dataset)]
            print(f"# Hanzy1996/CE-GZSL {pub['source']}; run in .scratch/cegzsl/code", file=sys.stderr)
            print(shlex.join(command(args.dataset, args.dataroot, args.nepoch, args.eval_every, args.seed,
                                     args.zsl_too)))
            return
        pairs = [t.partition("=") for t in args.logs]
        bad = [t for t, (_, sep, path) in zip(args.logs, pairs) if not sep or not path]
        if bad:
            parser.error(f"expected DATASET=LOG, got {bad}")
        curves, clocks = collect({ds: Path(path).read_text() for ds, _, path in pairs})
        best = best_rows(curves)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    pd.set_option("display.width", 200)
    print(curves.to_string(index=False, float_format="%.2f"))
    for (ds, seed), clock in clocks.groupby(["dataset", "seed"]):
        print(f"{ds} seed {seed}: {clock['epoch'].max()} epochs run, train {clock['train_s'].mean():.1f} s/epoch, "
              f"eval {clock['eval_s'].mean():.1f} s/evaluation", file=sys.stderr)
    for (ds, seed), run in curves.dropna(subset=["T1"]).groupby(["dataset", "seed"]):
        top = run.loc[run["T1"].idxmax()]
        print(f"{ds} seed {seed}: best T1 over the run {top['T1']:.2f} at epoch {int(top['epoch'])}", file=sys.stderr)
    print("best evaluation per run:")
    print(best.to_string(index=False, float_format="%.2f"))
    if args.curves:
        Path(args.curves).parent.mkdir(parents=True, exist_ok=True)
        curves.to_csv(args.curves, index=False, float_format="%.2f")
        print(f"wrote {args.curves}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        best.to_csv(args.out, index=False, float_format="%.2f")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
