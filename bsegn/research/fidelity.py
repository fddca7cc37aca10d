"""Fidelity of a re-implemented peer: our method against its public code, epoch for epoch.

The public codes (TF-VAEGAN, CE-GZSL) evaluate while they train: every K generator epochs a
fresh classifier is fitted and its best test H kept, and a run reports its best evaluation.
Ours is matched by one run per evaluated point (``train.<DS>.epochs=E``, the classifier's epochs
fixed, no calibration) scored by our ``test_selected`` protocol (best classifier epoch on test),
so both sides are test-selected on the same files after the same number of generator steps.
Steps, not epochs: our epoch is one pass over the seen features, TF-VAEGAN's is two
(``--feedback_loop 2``: a pass without its feedback module, then one with it), so its epoch e
is our E = 2e (:data:`PASSES_PER_EPOCH`).

``python -m bsegn.research.fidelity OURS.csv --public tf-vaegan=records/tfvaegan_runs.csv
ce-gzsl=records/public/cegzsl_curves.csv --out records/fidelity.csv`` (without ``--out`` it
prints the table and writes nothing)

* ``OURS.csv``: rows of such runs (``variant``, ``dataset``, ``seed``, ``train_epochs`` and the
  ``*_test_selected`` columns, as ``bsegn.research.ablation run`` writes them plus ``train_epochs``);
* each ``--public METHOD=CSV``: that method's public evaluations (``dataset, seed, epoch, T1, U,
  S, H``, epochs counted from 1: ``bsegn/research/tfvaegan.py collect``, ``tools/cegzsl_public.py collect
  --curves``).

The table has one row per method x dataset x pass count that both sides evaluated: the two H at that
epoch and the best H of each side up to it (what a run cut there would report), and the gaps.
"""

from __future__ import annotations

import argparse

import pandas as pd

from ..io import save_text

# passes over the seen training features in one epoch of the public code (ours: 1)
PASSES_PER_EPOCH = {"tf-vaegan": 2, "ce-gzsl": 1}

KEY = ["dataset", "method", "epoch"]  # epoch: passes over the data, as our train.epochs counts them
COLUMNS = [*KEY, "public_epoch", "ours_seed", "public_seed", "ours_T1", "public_T1", "ours_H", "public_H", "gap_H",
           "ours_best_H", "public_best_H", "gap_best_H"]


def ours_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """Our runs as an evaluation curve: one row per method x dataset x generator epochs."""
    need = {"variant", "dataset", "seed", "train_epochs", "T1_test_selected", "H_test_selected"}
    if missing := sorted(need - set(runs.columns)):
        raise ValueError(f"our runs: column(s) {missing} missing (expected {sorted(need)})")
    return pd.DataFrame({"dataset": runs["dataset"], "method": runs["variant"], "epoch": runs["train_epochs"],
                         "seed": runs["seed"], "T1": runs["T1_test_selected"], "H": runs["H_test_selected"]})


def public_curve(method: str, curves: pd.DataFrame) -> pd.DataFrame:
    """A public code's evaluations, its epochs (``public_epoch``) converted to our passes (``epoch``)."""
    if method not in PASSES_PER_EPOCH:
        raise ValueError(f"--public {method}: no public code known for it (known: {sorted(PASSES_PER_EPOCH)})")
    need = {"dataset", "seed", "epoch", "T1", "H"}
    if missing := sorted(need - set(curves.columns)):
        raise ValueError(f"--public {method}: column(s) {missing} missing (expected {sorted(need)})")
    out = curves.assign(method=method, public_epoch=curves["epoch"], epoch=curves["epoch"] * PASSES_PER_EPOCH[method])
    return out[["dataset", "method", "epoch", "public_epoch", "seed", "T1", "H"]]


def _with_best(curve: pd.DataFrame) -> pd.DataFrame:
    """Each row with the best H of its method x dataset up to its epoch."""
    curve = curve.sort_values(KEY, ignore_index=True)
    if curve.duplicated(KEY).any():
        raise ValueError(f"two evaluations of one method x dataset x epoch: "
                         f"{curve[curve.duplicated(KEY, keep=False)].head(2).to_dict('records')}")
    return curve.assign(best_H=curve.groupby(["dataset", "method"])["H"].cummax())


def table(ours: pd.DataFrame, public: pd.DataFrame) -> pd.DataFrame:
    """Both curves at the epochs both evaluated, with the gaps ours - public."""
    both = _with_best(ours).merge(_with_best(public), on=KEY, suffixes=("_ours", "_public"))
    out = pd.DataFrame({
        **{k: both[k] for k in KEY}, "public_epoch": both["public_epoch"],
        "ours_seed": both["seed_ours"], "public_seed": both["seed_public"],
        "ours_T1": both["T1_ours"], "public_T1": both["T1_public"],
        "ours_H": both["H_ours"], "public_H": both["H_public"], "gap_H": both["H_ours"] - both["H_public"],
        "ours_best_H": both["best_H_ours"], "public_best_H": both["best_H_public"],
        "gap_best_H": both["best_H_ours"] - both["best_H_public"]})
    return out[COLUMNS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ours", nargs="+", help="CSVs of our runs at fixed generator epochs")
    parser.add_argument("--public", nargs="+", required=True, metavar="METHOD=CSV")
    parser.add_argument("--out", help="also write the table here as CSV (the record: records/fidelity.csv; "
                                      "default: print it only)")
    args = parser.parse_args(argv)
    try:
        pairs = [t.partition("=") for t in args.public]
        if bad := [t for t, (m, sep, p) in zip(args.public, pairs) if not (m and sep and p)]:
            raise ValueError(f"--public: expected METHOD=CSV, got {bad}")
        ours = ours_curve(pd.concat([pd.read_csv(p) for p in args.ours], ignore_index=True))
        public = pd.concat([public_curve(m, pd.read_csv(p)) for m, _, p in pairs], ignore_index=True)
        df = table(ours, public)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if df.empty:
        parser.error("no method x dataset x epoch is evaluated on both sides")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.out:  # a record is written over only where asked
        save_text(df.to_csv(index=False, float_format="%.2f"), args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
