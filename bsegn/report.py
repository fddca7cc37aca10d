"""Aggregating per-run metrics into the CSV / Markdown / JSON reports.

* ``results.csv``: one row per dataset x seed;
* ``summary.csv``: one row per dataset, mean and std over seeds;
* ``metrics.json``: ``{dataset: {T1, U, S, H}}`` means, the file ``dvc exp show`` and
  ``dvc metrics diff`` read (short, stable keys);
* ``results.md``: the summary as a readable table;
* ``runs.csv``: one row per dataset x seed x timed stage, its wall seconds and the CPU vendor it
  ran on (what a run cost, and which vendor's bytes it holds: docs/usage.md).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .io import load_json, save_json, save_text

HEADLINE = ["T1", "U", "S", "H"]
PUBLISHED = Path("docs/published_results.csv")  # anchor methods' published numbers, with sources
# records/realistic.csv: one row per dataset x variant x seed x protocol (honest, test_selected)
PROTOCOL_COLUMNS = ["dataset", "variant", "seed", "protocol", *HEADLINE]


def replace_rows(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` (``records/realistic.csv``) with the rows of every (dataset, variant) in ``rows``
    replaced by ``rows``' rows of it. Those go where the first replaced row was, so the record's
    order (and its diff) stays readable; a (dataset, variant) new to ``table`` goes at the end."""
    old = list(zip(table["dataset"], table["variant"]))
    new = list(zip(rows["dataset"], rows["variant"]))
    parts, placed = [], set()
    for i, pair in enumerate(old):
        if pair not in new:
            parts.append(table.iloc[[i]])
        elif pair not in placed:
            parts.append(rows[[k == pair for k in new]])
            placed.add(pair)
    parts.append(rows[[k not in placed for k in new]])
    return pd.concat(parts, ignore_index=True)[list(table.columns)]


def headline_row(metrics: dict) -> dict:
    """T1, U, S, H of one run's metrics, and U_cs, S_cs, H_cs when it has calibrated stacking
    (its constant chosen on validation)."""
    row = {k: metrics[k] for k in HEADLINE}
    if "calibrated" in metrics:
        row.update({f"{k}_cs": metrics["calibrated"][k] for k in ("U", "S", "H")})
    return row


def result_row(metrics: dict) -> dict:
    """:func:`headline_row` plus the test-selected numbers, labelled ``*_test_selected``, and
    the H that guessing scores (``H_chance``; empty for runs from before it was recorded)."""
    return {**headline_row(metrics), **{f"{k}_test_selected": metrics["test_selected"][k] for k in HEADLINE},
            "H_chance": metrics.get("chance", {}).get("H", float("nan"))}


TIMED_STAGES = ("train", "generate", "train_val", "classify")  # the stages that write <stage>_seconds.json

AT_CHANCE = 2.0  # a run whose H is below this multiple of guessing's learned nothing worth reporting


def at_chance(results: pd.DataFrame) -> pd.DataFrame:
    """The runs (rows of ``results.csv``) whose H is within :data:`AT_CHANCE` x of chance."""
    if "H_chance" not in results:
        return results.iloc[0:0]
    return results[results["H"] < AT_CHANCE * results["H_chance"]]


def collect(datasets: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per run: dataset, seed, T1, U, S, H and the labelled test-selected variants."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            path = paths.metrics(dataset, seed)
            if not path.exists():
                raise FileNotFoundError(f"{path}: metrics of run {dataset}/seed {seed} missing; run `dvc repro` first")
            m = load_json(path)
            rows.append({"dataset": dataset, "seed": seed, **result_row(m)})
    return pd.DataFrame(rows)


def stage_runs(datasets: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per run and timed stage: dataset, seed, stage, seconds, cpu (its vendor)."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            for stage in TIMED_STAGES:
                timing = load_json(paths.seconds(dataset, seed, stage))
                rows.append({"dataset": dataset, "seed": seed, "stage": stage, "seconds": timing["seconds"],
                             "cpu": timing.get("cpu", "unknown")})  # files from before the vendor was recorded
    return pd.DataFrame(rows, columns=["dataset", "seed", "stage", "seconds", "cpu"])


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) std over seeds per dataset; std is empty (NaN) for a single seed,
    which has no spread to report."""
    value_cols = [c for c in results.columns if c not in ("dataset", "seed")]
    grouped = results.groupby("dataset", sort=False)[value_cols]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.concat([mean.add_suffix("_mean"), std.add_suffix("_std")], axis=1)
    out.insert(0, "n_seeds", results.groupby("dataset", sort=False).size())
    return out.reset_index()


def _pm(r, key: str) -> str:
    std = r[f"{key}_std"]
    return f"{r[f'{key}_mean']:.1f} ± " + ("n/a" if pd.isna(std) else f"{std:.1f}")


def markdown(summary: pd.DataFrame, published: pd.DataFrame | None = None,
             results: pd.DataFrame | None = None) -> str:
    """The summary as Markdown: headline, calibrated, test-selected and published numbers, each
    labelled; with ``results``, a warning naming every run at chance level."""
    cal = "H_cs_mean" in summary
    head = "| dataset | seeds | T1 | U | S | H |" + (" U (CS) | S (CS) | H (CS) |" if cal else "")
    lines = ["# Results", "",
             "Per-class top-1 accuracy (%), mean ± std over seeds. Headline numbers never look at test data "
             "(fixed or validation-chosen classifier epochs). CS = calibrated stacking, its constant chosen "
             "on the class-level validation split.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in summary.iterrows():
        cells = [_pm(r, k) for k in HEADLINE] + ([_pm(r, f"{k}_cs") for k in ("U", "S", "H")] if cal else [])
        lines.append(f"| {r['dataset']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    if results is not None and len(chance := at_chance(results)):
        runs = ", ".join(f"{r['dataset']} seed {r['seed']} (H {r['H']:.1f}, chance {r['H_chance']:.1f})"
                         for _, r in chance.iterrows())
        lines += ["", f"**At chance level** (H below {AT_CHANCE:g} x what guessing scores): {runs}. Such a run "
                  "learned nothing; look at its training curves before reading its numbers."]
    lines += ["", "Literature protocol, **test-selected** (the best classifier epoch chosen on the test set, "
              "as most published generative GZSL code reports; optimistic, not comparable with the table above):", "",
              "| dataset | T1 | U | S | H |", "|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        lines.append(f"| {r['dataset']} | " + " | ".join(_pm(r, f"{k}_test_selected") for k in HEADLINE) + " |")
    if published is not None:
        shown = published[published["dataset"].isin(summary["dataset"])]
        if len(shown):
            lines += ["", "Published numbers of anchor methods (as reported by their authors, mostly with "
                      "test-selected epochs; sources in docs/published_results.csv):", "",
                      "| method | dataset | T1 | U | S | H | source |", "|---|---|---|---|---|---|---|"]
            for _, r in shown.iterrows():
                vals = " | ".join("" if pd.isna(r[k]) else f"{r[k]:.1f}" for k in HEADLINE)
                lines.append(f"| {r['method']} | {r['dataset']} | {vals} | {r['source']} |")
    return "\n".join(lines) + "\n"


def copy_curves(datasets: list[str], seeds: list[int], out_dir: Path) -> None:
    """Per-epoch logs of every run, one CSV per run, where dvc.yaml's top-level plots look."""
    for dataset in datasets:
        for seed in seeds:
            for kind, src in (("train", paths.train_log), ("classify", paths.classify_log)):
                save_text(src(dataset, seed).read_text(), out_dir / "curves" / kind / f"{dataset}-seed{seed}.csv")


def write_reports(datasets: list[str], seeds: list[int], out_dir: str | Path = "reports") -> pd.DataFrame:
    out_dir = Path(out_dir)
    copy_curves(datasets, seeds, out_dir)
    results = collect(datasets, seeds)
    summary = summarise(results)
    save_text(results.to_csv(index=False, float_format="%.4f"), out_dir / "results.csv")
    save_text(summary.to_csv(index=False, float_format="%.4f"), out_dir / "summary.csv")
    save_text(stage_runs(datasets, seeds).to_csv(index=False), out_dir / "runs.csv")
    published = pd.read_csv(PUBLISHED) if PUBLISHED.exists() else None
    save_text(markdown(summary, published, results), out_dir / "results.md")
    keys = HEADLINE + (["H_cs"] if "H_cs_mean" in summary else [])
    save_json({r["dataset"]: {k: round(float(r[f"{k}_mean"]), 2) for k in keys} for _, r in summary.iterrows()},
              out_dir / "metrics.json")
    return summary
