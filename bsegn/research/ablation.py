"""The BSeGN ablation grid: which component adds what.

Each variant is a method of methods.yaml (``base.method``) plus ``-S`` overrides on top of its
settings for the dataset: the five methods as published, and BSeGN without one module at a
time (:data:`VARIANTS`). Two ways to run the grid:

* through DVC (every run is a cached, shareable experiment)::

      python -m bsegn.research.ablation queue --dataset SYN     # prints and runs `dvc exp run --queue ...`
      dvc queue start -j 1 && dvc queue status
      python -m bsegn.research.ablation collect --out records/ablation.csv   # dvc exp show --json -> the CSV

* in one process, for a quick benchmark that prints the table (no DVC involved)::

      python -m bsegn.research.ablation run --datasets SYN SYN_SHIFT --seeds 0 1 2 --out ablation.csv

  ``--split val`` screens the variants on the class-level validation split instead (train on
  its seen classes, score its held-out classes; no test image is looked at), which is where
  design choices are made; ``--gpus N`` spreads the workers over N GPUs; ``--set KEY=VALUE``
  applies one more override to every variant (``--set 'classify.{ds}.select_epochs="val"'``).
  ``choose SCREEN.csv`` applies the design rule to such a screen, ``advance SCREEN.csv ...
  --control bsegn`` a design round's (at least 1 H above the control on at least three
  datasets; ``--below``: what taking a part out costs); ``protocols RUNS.csv ...
  --out NEW.csv`` writes the honest and test-selected rows of test runs, and ``--into
  records/realistic.csv`` puts them in place of that record's rows of the same dataset and
  variant; ``record RUNS.csv --to records/realistic_runs.csv`` appends runs to a record,
  refusing a run it already holds.

Both write the CSV ``--out`` names (required: the record ``records/ablation.csv`` is written
over only when named): one row per variant x dataset x seed, plus the mean over seeds
printed as a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from concurrent.futures import ProcessPoolExecutor, as_completed
from io import StringIO
from pathlib import Path

import pandas as pd
import torch
import yaml

from .. import config, data, download, evaluate, pipeline, trainer
from ..config import METHODS, parse_set
from ..io import save_text
from ..model import run_generate
from ..report import PROTOCOL_COLUMNS, replace_rows, result_row


@dataclass(frozen=True)
class Levels:
    """A variant's change to the mFIM levels of its method on a dataset: one level added or
    dropped (``Levels(drop="fem")``), so that "BSeGN without its FEM" means the same on every
    dataset, whichever levels the method reads there."""

    add: str | None = None
    drop: str | tuple[str, ...] | None = None  # one level, or several (a YAML list)

    def __post_init__(self) -> None:
        if isinstance(self.drop, list):
            object.__setattr__(self, "drop", tuple(self.drop))
        for level in (self.add, *self.dropped()):
            if level is not None and level not in config.MFIM_LEVELS:  # a typo would change nothing
                raise ValueError(f"Levels: unknown mFIM level {level!r}; known: {list(config.MFIM_LEVELS)}")

    def dropped(self) -> tuple[str, ...]:
        return (self.drop,) if isinstance(self.drop, str) else tuple(self.drop or ())

    def apply(self, levels: list[str]) -> list[str]:
        out = [lv for lv in levels if lv not in self.dropped()]
        if self.add and self.add not in out:
            out.append(self.add)
        return out or ["visual"]


# variant -> {dotted params key: value}: a method (base.method) and changes on top of its
# settings for the dataset; "{ds}" keys go into params.yaml's top layer, the dataset's own
# block. A variant never depends on what params.yaml ships but for the `common` defaults.
BSEGN = {"base.method": "bsegn"}
VARIANTS: dict[str, dict[str, object]] = {
    "shipped": {},  # params.yaml as it is: base.method and every block it ships
    **{m: {"base.method": m} for m in METHODS},  # each method with its published settings
    # BSeGN without one module at a time, and with the FEM where its dataset has it off. The FEM
    # has two forms (its own network, train.fem; or CE-GZSL's embedding, train.embed with
    # embed_unseen): each module-less variant switches the module off in both, so it means the
    # same whichever form a dataset ships
    "bsegn-fem": {**BSEGN, "train.{ds}.fem": False, "train.{ds}.embed": False,
                  "classify.{ds}.mfim_levels": Levels(drop=("fem", "embedding"))},
    "bsegn-s2f": {**BSEGN, "train.{ds}.fem_s2f": False, "train.{ds}.embed_s2f": False},
    "bsegn-balance": {**BSEGN, "train.{ds}.fem_balance": False, "train.{ds}.embed_balance_weight": 0.0},
    "bsegn-fake_seen": {**BSEGN, "train.{ds}.fem_fake_seen": False},
    "bsegn-cycle": {**BSEGN, "train.{ds}.cycle": False, "train.{ds}.decoder_cycle_step": False,
                    "train.{ds}.feedback": False},
    "bsegn-mfim": {**BSEGN, "classify.{ds}.mfim_levels": ["visual"]},
    "bsegn+fem": {**BSEGN, "train.{ds}.fem": True, "classify.{ds}.mfim_levels": Levels(add="fem")},
    # the same with F in a wide embedding space scored against learned prototypes (train.fem_space)
    "bsegn+fem_embedding": {**BSEGN, "train.{ds}.fem": True, "train.{ds}.fem_space": "embedding",
                            "classify.{ds}.mfim_levels": Levels(add="fem")},
}


def overrides(variant: str, dataset: str, extra: dict[str, object] | None = None,
              params: dict | None = None) -> dict[str, object]:
    """The variant's ``-S`` overrides for ``dataset``, then ``extra`` (same ``{ds}`` keys) on
    top. A :class:`Levels` change is resolved against the variant's method on ``dataset``
    (``params``: default params.yaml)."""
    sets = {k.format(ds=dataset): v for k, v in {**VARIANTS[variant], **(extra or {})}.items()}
    changes = {k: v for k, v in sets.items() if isinstance(v, Levels)}
    if changes:
        resolved = config.apply_overrides(params if params is not None else config.load_params(),
                                          {k: v for k, v in sets.items() if k not in changes})
        levels = config.stage_config(resolved, "classify", dataset).mfim_levels
        sets.update({k: v.apply(levels) for k, v in changes.items()})
    return sets


def load_variants(path: str) -> list[str]:
    """Add the variants of a YAML file ``{name: {"train.{ds}.fem": true, ...}}``; return their names.

    An ``mfim_levels`` value may be ``{add: LEVEL}`` or ``{drop: LEVEL}``: a :class:`Levels`
    change of the method's levels on each dataset, as the built-in variants make them."""
    extra = yaml.safe_load(Path(path).read_text()) or {}
    for name, sets in extra.items():
        if not isinstance(sets, dict):
            raise ValueError(f"{path}: variant {name!r} must map dotted keys to values, got {sets!r}")
        for key, value in sets.items():
            if key.endswith(".mfim_levels") and isinstance(value, dict):
                if set(value) - {"add", "drop"}:
                    raise ValueError(f"{path}: {name}.{key}: expected {{add: LEVEL}} or {{drop: LEVEL or [LEVEL, ...]}}, "
                                     f"got {value!r}")
                sets[key] = Levels(**value)
    VARIANTS.update(extra)
    return list(extra)


# --------------------------------------------------------------------------- in-process


# params, variant, dataset, seed, prepared .npz, split, the variant's resolved overrides. The
# overrides travel with the job because spawned workers re-import this module: a variant that
# --variants-file added to VARIANTS in the parent does not exist in them.
Job = tuple[dict, str, str, int, str, str, dict]


def _run_one(job: Job) -> dict:
    """One variant x dataset x seed: the per-seed stages' own functions, in their order.

    ``split`` ``test``: the pipeline's run, scored on the test split. ``val``: the stage
    ``train_val`` alone and the validation-split choices (classifier epochs, calibration
    constant) that ``classify`` would make from it; the row holds what they score there.
    """
    params, variant, dataset, seed, prepared_path, split, sets = job
    run = pipeline.run_config(config.apply_overrides(params, sets), dataset)
    label = f"{variant} {dataset} {seed}"
    validation = None
    if split == "val" or evaluate.validation_needed(run.classify):
        validation = trainer.run_train_val(data.load_prepared(prepared_path, split="val"), run, seed,
                                            label=f"{label} train_val")
    if split == "val":
        return screening_row(variant, dataset, seed, evaluate.select(validation, run, seed))
    bench = data.load_prepared(prepared_path)
    model, _ = trainer.run_train(bench, run, seed, label=label)
    x, y = run_generate(bench, model, run, seed)
    metrics, _, _, selection = evaluate.run_classify(bench, model, x, y, run, seed, validation)
    return experiment_row(variant, dataset, seed, metrics, selection)


def experiment_row(variant: str, dataset: str, seed: int, metrics: dict, selection: dict | None = None) -> dict:
    """One row of records/ablation.csv from a run's metrics (runs/<DS>/seed<S>/metrics.json),
    with the validation split's choices and scores when the run made them."""
    row = {"variant": variant, "dataset": dataset, "seed": seed, "split": "test", **result_row(metrics)}
    if selection is not None:
        row.update({**_choices(selection), "val_T1": selection["val_T1"], "val_H": selection["val_H"],
                    "val_H_cs": selection["val_H_cs"]})
    return row


def _choices(selection: dict) -> dict:
    """What :func:`bsegn.evaluate.select_on_validation` chose: the constant and the epochs."""
    return {"gamma": selection["gamma"], "epochs_zsl": selection["epochs"]["zsl"],
            "epochs_gzsl": selection["epochs"]["gzsl"]}


def screening_row(variant: str, dataset: str, seed: int, selection: dict) -> dict:
    """One row of a validation-split screen: the scores at the epochs and calibration constant
    chosen there (:func:`bsegn.evaluate.select_on_validation`), the numbers a design is chosen by."""
    curve = {r["epoch"]: r for r in selection["curve"]}
    gzsl = curve[selection["epochs"]["gzsl"]]
    return {"variant": variant, "dataset": dataset, "seed": seed, "split": "val",
            "T1": curve[selection["epochs"]["zsl"]]["T1"], **{k: gzsl[k] for k in ("U", "S", "H")},
            **{k: gzsl[k] for k in ("U_cs", "S_cs", "H_cs")}, **_choices(selection)}


def _init_worker(threads: int | None, counter, n_gpus: int) -> None:
    """Worker set-up: its thread count, and its GPU (round robin over ``n_gpus``), chosen by
    ``CUDA_VISIBLE_DEVICES`` before the worker first touches CUDA. Where the parent already
    restricts ``CUDA_VISIBLE_DEVICES`` (``2,3``), the workers take turns over that list."""
    if threads:
        torch.set_num_threads(threads)
    if n_gpus > 0:
        with counter.get_lock():
            k = counter.value
            counter.value += 1
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        ids = visible[:n_gpus] if visible else [str(i) for i in range(n_gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[k % len(ids)]


def run_grid(params: dict, datasets: list[str], seeds: list[int], variants: list[str], workers: int,
             on_row: Callable[[pd.DataFrame], None] | None = None, split: str = "test",
             extra: dict[str, object] | None = None, gpus: int = 0) -> pd.DataFrame:
    """Every variant x dataset x seed in worker processes; download and prepare as their stages do.

    ``split``: ``test`` (the pipeline's runs) or ``val`` (screen on the validation split,
    :func:`_run_one`). ``extra``: overrides applied to every variant. ``gpus``: spread the
    workers over this many GPUs (0: each worker uses ``base.device`` as it resolves).
    ``on_row`` gets the rows finished so far after each run, in job order, so a grid cut short
    (a GPU lease running out) still leaves what it measured."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    cfg = config.download_config(params)
    prep_cfg = config.prepare_config(params)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for ds in datasets:
            raw = Path(tmp) / "raw" / ds
            download.fetch_dataset(ds, cfg.sources[ds], raw, Path(cfg.cache_dir), cfg.timeout_s, cfg.retries)
            prepared = Path(tmp) / f"{ds}.npz"
            data.save_prepared(prepared, data.prepare(raw, prep_cfg))
            jobs += [(params, v, ds, s, str(prepared), split, overrides(v, ds, extra, params))
                     for v in variants for s in seeds]
        # one thread per worker process when several share the cores (float sums may then
        # differ from a stage's in the last bits); one worker keeps the stages' thread count
        threads = 1 if workers > 1 else None
        rows: list[dict | None] = [None] * len(jobs)
        # spawned, not forked, workers: a fork of a parent whose torch already ran its thread
        # pool can hang in the child, and CUDA cannot be used in a forked child at all
        ctx = multiprocessing.get_context("spawn")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads, counter, gpus)) as pool:
            order = {pool.submit(_run_one, job): i for i, job in enumerate(jobs)}
            for done in as_completed(order):
                rows[order[done]] = done.result()
                if on_row is not None:
                    on_row(pd.DataFrame([r for r in rows if r is not None]))
    return pd.DataFrame(rows)


def protocol_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The two protocols of each test-split run, one row each (``records/realistic.csv``):

    * ``honest``: the classifier epochs, and the calibrated-stacking constant when the run
      has one (``U_cs``/``S_cs``/``H_cs``), chosen on the validation split;
    * ``test_selected``: the best classifier epoch on the test set, uncalibrated (what most
      published code reports).

    A run's ``experiment`` (``bsegn.grid collect``), when the runs have one, goes with both rows.
    """
    provenance = ["experiment"] if "experiment" in df else []  # bsegn.grid collect's runs name theirs
    rows = []
    for r in df[df["split"] == "test"].to_dict("records") if "split" in df else df.to_dict("records"):
        cs = "H_cs" in r and pd.notna(r["H_cs"])
        honest = {"T1": r["T1"], **{k: r[f"{k}_cs" if cs else k] for k in ("U", "S", "H")}}
        selected = {k: r[f"{k}_test_selected"] for k in ("T1", "U", "S", "H")}
        for protocol, values in (("honest", honest), ("test_selected", selected)):
            rows.append({"dataset": r["dataset"], "variant": r["variant"], "seed": r["seed"], "protocol": protocol,
                         **values, **{k: r[k] for k in provenance}})
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS + provenance)


RUN_KEY = ["variant", "dataset", "seed", "split"]  # one run of `run`: a row of its CSV


def record_text(record: str | None, new: pd.DataFrame, source: str) -> str:
    """The record CSV's text (``record``; None: none yet) with ``new``'s rows appended
    (``records/realistic_runs.csv``, ``records/realistic_screen.csv``). The recorded rows keep
    their bytes; ``new`` must have the record's columns in its order and no run
    (variant, dataset, seed, split) the record or ``new`` already has: a run measured twice
    would weigh twice in every mean taken over the record. ``source`` names ``new`` in errors."""
    missing = [k for k in RUN_KEY if k not in new.columns]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing}; expected the CSV of `run`")
    header, rows = new.to_csv(index=False, float_format="%.4f").split("\n", 1)
    if record is None:  # a new record: new's header
        record = header + "\n"
    old = pd.read_csv(StringIO(record))
    if list(new.columns) != list(old.columns):
        raise ValueError(f"{source}: columns {list(new.columns)} differ from the record's {list(old.columns)}")
    keys = pd.concat([old[RUN_KEY], new[RUN_KEY]]).astype(str)
    twice = keys[keys.duplicated()]
    if len(twice):
        raise ValueError(f"{source}: run(s) already in the record (or twice in it): {twice.head(3).to_dict('records')}")
    return (record if record.endswith("\n") else record + "\n") + rows


def choose(screen: pd.DataFrame, exclude: list[str] | None = None) -> tuple[dict[str, str], pd.DataFrame]:
    """The design rule of a validation screen (``run --split val``): per dataset, the variant
    with the best mean validation H, calibrated (``H_cs``) where the rows have it. Returns
    ``({dataset: variant}, the means it was chosen from)``; ``exclude`` leaves variants out
    (the baseline, when choosing among BSeGN designs)."""
    if "split" in screen and (screen["split"] != "val").any():
        raise ValueError("choose: only validation-split rows (run --split val) may choose a design")
    rows = screen[~screen["variant"].isin(exclude or [])]
    if rows.empty:
        raise ValueError("choose: no rows left to choose from")
    key = "H_cs" if "H_cs" in rows and rows["H_cs"].notna().all() else "H"
    means = rows.groupby(["dataset", "variant"])[key].agg(["mean", "count"]).reset_index()
    best = means.sort_values(["dataset", "mean"], ascending=[True, False], kind="stable").groupby("dataset").head(1)
    return dict(zip(best["dataset"], best["variant"])), means


def advance(screen: pd.DataFrame, control: str, margin: float = 1.0, min_datasets: int = 3,
            below: bool = False) -> pd.DataFrame:
    """A design round's rule over a validation screen: per variant, its mean ``H_cs`` minus
    ``control``'s on each dataset, and whether it is at least ``margin`` above the control on at
    least ``min_datasets`` datasets (``below``: at least ``margin`` below, "taking it out
    costs", with the control the full design). ``decided`` says whether the datasets the
    variant has no rows on could still change the answer."""
    means = screen.groupby(["variant", "dataset"])["H_cs"].mean().unstack("dataset")  # variant x dataset
    if control not in means.index:
        raise ValueError(f"advance: no rows of the control {control!r}; variants: {sorted(means.index)}")
    delta = means.drop(index=control) - means.loc[control]
    gain = -delta if below else delta
    hits = (gain.round(9) >= margin).sum(axis=1)  # 50.9 - 50.0 is 0.8999...: float noise is no miss
    missing = (delta.isna() & means.loc[control].notna()).sum(axis=1)
    out = delta.round(2)
    out["hits"] = hits
    out["passes"] = hits >= min_datasets
    out["decided"] = out["passes"] | (hits + missing < min_datasets)
    return out.reset_index()


# --------------------------------------------------------------------------- through DVC


def experiment_name(variant: str, dataset: str) -> str:
    """The queued experiment's name, ``abl-<variant>-<dataset>`` (git allows the ``+``)."""
    return f"abl-{variant}-{dataset}"


def variant_of(name: str) -> str:
    """The variant an experiment name stands for: the longest known variant ``v`` with
    ``name == experiment_name(v, dataset)`` for some dataset (``bsegn-s2f`` before ``bsegn``);
    a name that is no ablation run stands for itself."""
    known = [v for v in VARIANTS if name.startswith(experiment_name(v, ""))]
    return max(known, key=len) if known else name


def queue_commands(dataset: str, seeds: list[int], variants: list[str]) -> list[list[str]]:
    cmds = []
    for v in variants:
        sets = {"base.datasets": [dataset], "base.seeds": seeds, **overrides(v, dataset)}
        cmd = ["dvc", "exp", "run", "--queue", "-n", experiment_name(v, dataset)]
        for k, val in sets.items():
            # ++: add or modify; a variant's key may be absent from the dataset's params block
            cmd += ["-S", f"++{k}={json.dumps(val, separators=(',', ':'))}"]
        cmds.append(cmd)
    return cmds


def collect_experiments(exp_show_json: list) -> pd.DataFrame:
    """Rows (experiment name, params, per-dataset metrics) from ``dvc exp show --json``."""
    rows = []

    def visit(rev: dict) -> None:
        d = rev.get("data") or {}
        name = rev.get("name") or d.get("name") or d.get("rev", "")
        if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
            name = name[:7]  # an unnamed commit: its short hash
        metrics = ((d.get("metrics") or {}).get("reports/metrics.json") or {}).get("data") or {}
        params = ((d.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        for ds, m in metrics.items():
            variant = variant_of(name)
            rows.append({"variant": variant, "dataset": ds, "seeds": len(params.get("base", {}).get("seeds", [])),
                         **{k: m.get(k) for k in ("T1", "U", "S", "H", "H_cs") if k in m}})
        for exp in rev.get("experiments") or []:
            for sub in exp.get("revs") or []:
                visit(sub)

    for rev in exp_show_json:
        visit(rev)
    return pd.DataFrame(rows)


def protocol_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean T1/U/S/H per dataset, variant and protocol of :func:`protocol_rows`' ``rows``: what
    ``records/realistic.csv`` says. The honest H is the calibrated one where the runs have it,
    not the ``H`` column of :func:`table`."""
    return rows.groupby(["dataset", "variant", "protocol"])[["T1", "U", "S", "H"]].mean().round(2)


def table(df: pd.DataFrame) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(VARIANTS)}
    cols = [c for c in ("T1", "U", "S", "H", "H_cs", "H_test_selected") if c in df]
    out = df.groupby(["dataset", "variant"])[cols].agg(["mean", "std"]).round(2)
    return out.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, 99)) if idx.name == "variant" else idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the grid in-process and write its rows to --out")
    r.add_argument("--datasets", nargs="+", default=["SYN", "SYN_SHIFT"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--variants", nargs="+", default=None, help=f"default: all of {list(VARIANTS)}")
    r.add_argument("--variants-file", help="YAML of extra variants {name: {dotted key: value}}")
    r.add_argument("--split", choices=["test", "val"], default="test",
                   help="val: screen on the validation split (train_val + its choices); test: the pipeline's runs")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for every variant, {ds} for the dataset (repeatable)")
    r.add_argument("--gpus", type=int, default=0, help="spread the workers over this many GPUs")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--out", required=True,
                   help="the CSV of the runs, written after each one (the record: records/ablation.csv)")
    q = sub.add_parser("queue", help="queue the grid as DVC experiments")
    q.add_argument("--dataset", default="SYN")
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    c = sub.add_parser("collect", help="dvc exp show --json -> the CSV --out names")
    c.add_argument("--out", required=True, help="the CSV of the experiments (the record: records/ablation.csv)")
    p = sub.add_parser("protocols", help="runs' CSVs -> one row per protocol (honest, test_selected)")
    p.add_argument("csv", nargs="+", help="CSVs of `run` (test split), read as one")
    p.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW", help="variant names to report under")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="write the rows as a new CSV")
    where.add_argument("--into", help="replace this CSV's rows of the same (dataset, variant), in place "
                                      "(records/realistic.csv, when a new design ships)")
    rc = sub.add_parser("record", help="append runs' CSVs to a record (records/realistic_runs.csv ...)")
    rc.add_argument("csv", nargs="+", help="CSVs of `run`, appended in this order")
    rc.add_argument("--to", required=True, help="the record; created with the first CSV's header if absent")
    ch = sub.add_parser("choose", help="a validation screen's CSV -> the best variant per dataset")
    ch.add_argument("csv", help="the CSV of `run --split val`")
    ch.add_argument("--exclude", nargs="*", default=[m for m in METHODS if m != "bsegn"],
                    help="variants not to choose (default: the methods other than bsegn)")
    ad = sub.add_parser("advance", help="a design round's rule: which variants beat a control by a margin "
                                        "on enough datasets")
    ad.add_argument("csv", nargs="+", help="CSVs of `run --split val`, read as one (a round's rows and its controls')")
    ad.add_argument("--control", required=True, help="the variant every other is measured against")
    ad.add_argument("--margin", type=float, default=1.0, help="H points (default 1)")
    ad.add_argument("--min-datasets", type=int, default=3, help="datasets the margin must hold on (default 3)")
    ad.add_argument("--below", action="store_true", help="count datasets where the variant is the margin "
                    "*below* the control (the control being the full design: what taking a part out costs)")
    args = parser.parse_args()

    if args.cmd == "advance":
        screen = pd.concat([pd.read_csv(c) for c in args.csv])
        if (screen["split"] != "val").any():
            parser.error("advance: only validation-split rows (run --split val) may decide a design")
        try:
            verdicts = advance(screen, args.control, args.margin, args.min_datasets, args.below)
        except ValueError as e:
            parser.error(str(e))
        print(verdicts.to_string(index=False))
        return
    if args.cmd == "choose":
        screen = pd.read_csv(args.csv)
        if "split" in screen and (screen["split"] != "val").any():
            print(f"{args.csv}: {int((screen['split'] != 'val').sum())} test-split row(s) left out: "
                  "a design is chosen on validation rows only")
            screen = screen[screen["split"] == "val"]
        try:
            chosen, means = choose(screen, args.exclude)
        except ValueError as e:
            parser.error(str(e))
        print(means.round(2).to_string(index=False))
        print(json.dumps(chosen))
        return
    if args.cmd == "record":
        target = Path(args.to)
        text = target.read_text() if target.exists() else None
        try:
            for path in args.csv:
                text = record_text(text, pd.read_csv(path), path)
        except ValueError as e:
            parser.error(str(e))  # nothing written: the record is all or nothing
        except OSError as e:
            parser.error(f"{e.filename}: {e.strerror or e}")
        save_text(text, target)
        print(f"appended {', '.join(args.csv)} to {target}")
        return
    if args.cmd == "protocols":
        names = dict(t.split("=", 1) for t in args.rename)
        try:
            runs = pd.concat([pd.read_csv(c) for c in args.csv])
            record = pd.read_csv(args.into) if args.into else None
        except OSError as e:
            parser.error(f"{e.filename}: {e.strerror or e}")
        df = protocol_rows(runs.replace({"variant": names}))
        target, written = (args.out, df) if record is None else (args.into, replace_rows(record, df))
        save_text(written.to_csv(index=False, float_format="%.2f"), target)
        print(protocol_means(df).to_string())
        print(f"wrote {len(df)} row(s) into {target}")
        return

    if args.cmd == "run":
        names = load_variants(args.variants_file) if args.variants_file else []
        variants = args.variants or (names or list(VARIANTS))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        def partial(df: pd.DataFrame) -> None:
            save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
            print(f"{len(df)} run(s) done, written to {args.out}", flush=True)

        try:
            extra = dict(parse_set(t) for t in args.set)
        except ValueError as e:
            parser.error(str(e))
        df = run_grid(config.load_params(args.params), args.datasets, args.seeds, variants, args.workers, partial,
                      split=args.split, extra=extra, gpus=args.gpus)
    elif args.cmd == "queue":
        for cmd in queue_commands(args.dataset, args.seeds, args.variants):
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
        print("queued; now run: dvc queue start -j 1, then python -m bsegn.research.ablation collect --out CSV")
        return
    else:
        shown = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
        df = collect_experiments(json.loads(shown))
    save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
    print(table(df).to_string())
    if "H_test_selected" in df and ("split" not in df or (df["split"] == "test").any()):
        print("by protocol (honest: calibrated where the runs are; as `protocols` writes them):")
        print(protocol_means(protocol_rows(df)).to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
