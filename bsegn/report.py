"""Aggregating per-run metrics into the CSV / Markdown / JSON reports.

* ``results.csv``: one row per dataset x seed;
* ``summary.csv``: one row per dataset, mean and std over seeds;
* ``metrics.json``: ``{dataset: {T1, U, S, H}}`` means, the file ``dvc exp show`` and
  ``dvc metrics diff`` read (short, stable keys);
* ``results.md``: the summary as a readable table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .io import load_json, save_json, save_text

HEADLINE = ["T1", "U", "S", "H"]


def collect(datasets: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per run: dataset, seed, T1, U, S, H and the labelled test-selected variants."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            path = paths.metrics(dataset, seed)
            if not path.exists():
                raise FileNotFoundError(f"{path}: metrics of run {dataset}/seed {seed} missing; run `dvc repro` first")
            m = load_json(path)
            row = {"dataset": dataset, "seed": seed, **{k: m[k] for k in HEADLINE}}
            row.update({f"{k}_test_selected": m["test_selected"][k] for k in HEADLINE})
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) std over seeds per dataset; std is 0 for a single seed."""
    value_cols = [c for c in results.columns if c not in ("dataset", "seed")]
    grouped = results.groupby("dataset", sort=False)[value_cols]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = pd.concat([mean.add_suffix("_mean"), std.add_suffix("_std")], axis=1)
    out.insert(0, "n_seeds", results.groupby("dataset", sort=False).size())
    return out.reset_index()


def markdown(summary: pd.DataFrame) -> str:
    lines = ["# Results", "",
             "Per-class top-1 accuracy (%), mean ± std over seeds. Headline numbers use fixed epochs "
             "(no decision on test data).", "",
             "| dataset | seeds | T1 | U | S | H |", "|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        cells = " | ".join(f"{r[f'{k}_mean']:.1f} ± {r[f'{k}_std']:.1f}" for k in HEADLINE)
        lines.append(f"| {r['dataset']} | {r['n_seeds']} | {cells} |")
    lines += ["", "Literature protocol, **test-selected** (the best classifier epoch chosen on the test set, "
              "as most published generative GZSL code reports; not a fair estimate):", "",
              "| dataset | T1 | U | S | H |", "|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        cells = " | ".join(f"{r[f'{k}_test_selected_mean']:.1f} ± {r[f'{k}_test_selected_std']:.1f}" for k in HEADLINE)
        lines.append(f"| {r['dataset']} | {cells} |")
    return "\n".join(lines) + "\n"


def write_reports(datasets: list[str], seeds: list[int], out_dir: str | Path = "reports") -> pd.DataFrame:
    out_dir = Path(out_dir)
    results = collect(datasets, seeds)
    summary = summarise(results)
    save_text(results.to_csv(index=False, float_format="%.4f"), out_dir / "results.csv")
    save_text(summary.to_csv(index=False, float_format="%.4f"), out_dir / "summary.csv")
    save_text(markdown(summary), out_dir / "results.md")
    save_json({r["dataset"]: {k: round(float(r[f"{k}_mean"]), 2) for k in HEADLINE} for _, r in summary.iterrows()},
              out_dir / "metrics.json")
    return summary
