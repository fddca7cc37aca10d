"""The BSeGN ablation grid: which component adds what.

Each variant is a set of ``-S`` overrides on params.yaml. Two ways to run the grid:

* through DVC (every run is a cached, shareable experiment)::

      python -m bsegn.ablation queue --dataset SYN     # prints and runs `dvc exp run --queue ...`
      dvc queue start -j 1 && dvc queue status
      python -m bsegn.ablation collect                 # dvc exp show --json -> reports/ablation.csv

* in one process, for a quick benchmark that prints the table (no DVC involved)::

      python -m bsegn.ablation run --datasets SYN SYN_SHIFT --seeds 0 1 2

Both write ``reports/ablation.csv``: one row per variant x dataset x seed, plus the
mean over seeds printed as a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import config, data, download, evaluate, pipeline, trainer
from .io import save_text
from .report import result_row

# variant -> {dotted params key: value}; keys are relative to the dataset's blocks
# every variant starts from the f-CLSWGAN baseline, whatever params.yaml ships
OFF = {"train.{ds}.fem": False, "train.{ds}.cycle": False, "train.{ds}.vae": False,
       "classify.{ds}.mfim_levels": ["visual"]}
FULL = {**OFF, "train.{ds}.fem": True, "train.{ds}.cycle": True, "classify.{ds}.mfim_levels": ["semantic", "fem"]}
VARIANTS: dict[str, dict[str, object]] = {
    "baseline": OFF,  # f-CLSWGAN: every BSeGN switch off, classifier on visual features
    "cycle": {**OFF, "train.{ds}.cycle": True},
    "fem_f2s": {**OFF, "train.{ds}.fem": True, "train.{ds}.fem_s2f": False, "train.{ds}.fem_balance": False},
    "fem_bidir": {**OFF, "train.{ds}.fem": True, "train.{ds}.fem_balance": False},
    "fem": {**OFF, "train.{ds}.fem": True},  # FEM trained and fed back to G; classifier still on visual
    "cycle+mfim": {**OFF, "train.{ds}.cycle": True, "classify.{ds}.mfim_levels": ["hidden", "semantic"]},
    "bsegn": FULL,  # FEM + cycle + mFIM over the cycle and FEM levels
    "bsegn-s2f": {**FULL, "train.{ds}.fem_s2f": False},
    "bsegn-balance": {**FULL, "train.{ds}.fem_balance": False},
    "bsegn-fake_seen": {**FULL, "train.{ds}.fem_fake_seen": False},
    "bsegn-cycle": {**FULL, "train.{ds}.cycle": False},
    "bsegn+visual": {**FULL, "classify.{ds}.mfim_levels": ["visual", "hidden", "semantic", "fem"]},
}


def overrides(variant: str, dataset: str) -> dict[str, object]:
    return {k.format(ds=dataset): v for k, v in VARIANTS[variant].items()}


def load_variants(path: str) -> list[str]:
    """Add the variants of a YAML file ``{name: {"train.{ds}.fem": true, ...}}``; return their names."""
    extra = yaml.safe_load(Path(path).read_text()) or {}
    VARIANTS.update(extra)
    return list(extra)


# --------------------------------------------------------------------------- in-process


def _run_one(args: tuple[dict, str, str, int, str]) -> dict:
    """One variant x dataset x seed: the per-seed stages' own functions, in their order."""
    params, variant, dataset, seed, prepared_path = args
    run = pipeline.run_config(config.apply_overrides(params, overrides(variant, dataset)), dataset)
    bench = data.load_prepared(prepared_path)
    model, _ = trainer.run_train(bench, run, seed, label=f"{variant} {dataset} {seed}")
    x, y = pipeline.run_generate(bench, model, run, seed)
    validation = None
    if evaluate.validation_needed(run.classify):
        validation = trainer.run_train_val(data.load_prepared(prepared_path, split="val"), run, seed,
                                            label=f"{variant} {dataset} {seed} train_val")
    metrics, *_ = evaluate.run_classify(bench, model, x, y, run, seed, validation)
    return experiment_row(variant, dataset, seed, metrics)


def experiment_row(variant: str, dataset: str, seed: int, metrics: dict) -> dict:
    """One row of reports/ablation.csv from a run's metrics (runs/<DS>/seed<S>/metrics.json)."""
    return {"variant": variant, "dataset": dataset, "seed": seed, **result_row(metrics)}


def run_grid(params: dict, datasets: list[str], seeds: list[int], variants: list[str], workers: int,
             on_row: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Every variant x dataset x seed in worker processes; download and prepare as their stages do.

    ``on_row`` gets the rows finished so far after each run, in job order, so a grid cut short
    (a GPU lease running out) still leaves what it measured."""
    cfg = config.download_config(params)
    prep_cfg = config.prepare_config(params)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for ds in datasets:
            raw = Path(tmp) / "raw" / ds
            download.fetch_dataset(ds, cfg.sources[ds], raw, Path(cfg.cache_dir), cfg.timeout_s, cfg.retries)
            prepared = Path(tmp) / f"{ds}.npz"
            data.save_prepared(prepared, data.prepare(raw, prep_cfg))
            jobs += [(params, v, ds, s, str(prepared)) for v in variants for s in seeds]
        # one thread per worker process when several share the cores (float sums may then
        # differ from a stage's in the last bits); one worker keeps the stages' thread count
        init = torch.set_num_threads if workers > 1 else None  # a plain function: picklable for any start method
        rows: list[dict | None] = [None] * len(jobs)
        with ProcessPoolExecutor(workers, initializer=init, initargs=(1,)) as pool:
            order = {pool.submit(_run_one, job): i for i, job in enumerate(jobs)}
            for done in as_completed(order):
                rows[order[done]] = done.result()
                if on_row is not None:
                    on_row(pd.DataFrame([r for r in rows if r is not None]))
    return pd.DataFrame(rows)


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
            cmd += ["-S", f"{k}={json.dumps(val, separators=(',', ':'))}"]
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


def table(df: pd.DataFrame) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(VARIANTS)}
    cols = [c for c in ("T1", "U", "S", "H", "H_cs") if c in df]
    out = df.groupby(["dataset", "variant"])[cols].agg(["mean", "std"]).round(2)
    return out.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, 99)) if idx.name == "variant" else idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the grid in-process and write reports/ablation.csv")
    r.add_argument("--datasets", nargs="+", default=["SYN", "SYN_SHIFT"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--variants", nargs="+", default=None, help=f"default: all of {list(VARIANTS)}")
    r.add_argument("--variants-file", help="YAML of extra variants {name: {dotted key: value}}")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--out", default="reports/ablation.csv")
    q = sub.add_parser("queue", help="queue the grid as DVC experiments")
    q.add_argument("--dataset", default="SYN")
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    c = sub.add_parser("collect", help="dvc exp show --json -> reports/ablation.csv")
    c.add_argument("--out", default="reports/ablation.csv")
    args = parser.parse_args()

    if args.cmd == "run":
        names = load_variants(args.variants_file) if args.variants_file else []
        variants = args.variants or (names or list(VARIANTS))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        def partial(df: pd.DataFrame) -> None:
            save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
            print(f"{len(df)} run(s) done, written to {args.out}", flush=True)

        df = run_grid(config.load_params(args.params), args.datasets, args.seeds, variants, args.workers, partial)
    elif args.cmd == "queue":
        for cmd in queue_commands(args.dataset, args.seeds, args.variants):
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
        print("queued; now run: dvc queue start -j 1, then python -m bsegn.ablation collect")
        return
    else:
        shown = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
        df = collect_experiments(json.loads(shown))
    save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
    print(table(df).to_string())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
