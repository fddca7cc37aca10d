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
import copy
import json
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import config, data, download, evaluate, runtime, trainer, validation
from .io import save_text

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


def apply(params: dict, sets: dict[str, object]) -> dict:
    """A copy of ``params`` with dotted-key ``sets`` applied (missing blocks are created)."""
    params = copy.deepcopy(params)
    for key, value in sets.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return params


# --------------------------------------------------------------------------- in-process


def _run_one(args: tuple[dict, str, str, int, str]) -> dict:
    """One variant x dataset x seed, as the pipeline runs it (incl. validation choices)."""
    params, variant, dataset, seed, prepared_path = args
    torch.set_num_threads(1)  # one process per core
    p = apply(params, overrides(variant, dataset))
    train_cfg, gen_cfg = config.stage_config(p, "train", dataset), config.stage_config(p, "generate", dataset)
    cls_cfg = config.stage_config(p, "classify", dataset)
    base = config.base_config(p)
    device = runtime.resolve_device(base.device, base.tf32)
    bench = data.load_prepared(prepared_path)
    runtime.seed_everything(seed)
    model, _ = trainer.train(bench, train_cfg, device, label=f"{variant} {dataset} {seed}")
    runtime.seed_everything(seed)
    x, y = trainer.generate(model, torch.as_tensor(bench.att, device=device),
                            torch.as_tensor(bench.unseen, device=device), gen_cfg.syn_num)
    selection = None
    if evaluate.validation_needed(cls_cfg):
        val = data.load_prepared(prepared_path, split="val")
        val_model, vx, vy = validation.train_on_validation(val, train_cfg, gen_cfg, seed, device, label="val")
        runtime.seed_everything(seed)
        selection = evaluate.choose_on_validation(val, val_model, vx.cpu().numpy(), vy.cpu().numpy(), cls_cfg, device)
    runtime.seed_everything(seed)
    metrics, _, _ = evaluate.evaluate(bench, model, x.cpu().numpy(), y.cpu().numpy(), cls_cfg, device,
                                      epochs=selection["epochs"] if selection else None,
                                      gamma=selection["gamma"] if selection and cls_cfg.calibration else None)
    row = {"variant": variant, "dataset": dataset, "seed": seed, **{k: metrics[k] for k in ("T1", "U", "S", "H")}}
    if "calibrated" in metrics:
        row.update({f"{k}_cs": metrics["calibrated"][k] for k in ("U", "S", "H")})
    return row


def run_grid(params: dict, datasets: list[str], seeds: list[int], variants: list[str], workers: int) -> pd.DataFrame:
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
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_run_one, jobs))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- through DVC


def queue_commands(dataset: str, seeds: list[int], variants: list[str]) -> list[list[str]]:
    cmds = []
    for v in variants:
        sets = {"base.datasets": [dataset], "base.seeds": seeds, **overrides(v, dataset)}
        cmd = ["dvc", "exp", "run", "--queue", "-n", f"abl-{v.replace('+', '-')}-{dataset}"]
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
            variant = name[4:].rsplit("-", 1)[0] if name.startswith("abl-") else name
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
        df = run_grid(config.load_params(args.params), args.datasets, args.seeds, variants, args.workers)
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
