"""bsegn.research.fidelity: our re-implementation against its public code at equal generator epochs."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bsegn.research import fidelity

ROOT = Path(__file__).resolve().parents[1]


def _ours(epoch: int, h: float, t1: float = 50.0) -> dict:
    return {"variant": "tf-vaegan", "dataset": "SYN_CUB", "seed": 3, "train_epochs": epoch,
            "T1_test_selected": t1, "H_test_selected": h}


def _public(epoch: int, h: float) -> dict:
    return {"dataset": "SYN_CUB", "seed": 3483, "epoch": epoch, "T1": 55.0, "U": 1.0, "S": 2.0, "H": h}


def test_the_table_pairs_equal_passes_and_takes_each_sides_best_so_far():
    ours = fidelity.ours_curve(pd.DataFrame([_ours(10, 20.0), _ours(20, 30.0), _ours(30, 25.0)]))
    # CE-GZSL's epoch is one pass; evaluated every 5 epochs, its best up to 20 is epoch 15's
    public = fidelity.public_curve("ce-gzsl", pd.DataFrame(
        [_public(5, 5.0), _public(10, 18.0), _public(15, 40.0), _public(20, 35.0)])).assign(method="tf-vaegan")
    t = fidelity.table(ours, public)
    assert list(t.columns) == fidelity.COLUMNS
    assert list(t["epoch"]) == [10, 20]  # our epoch 30 has no public evaluation
    assert list(t["gap_H"]) == [2.0, -5.0]
    assert list(t["ours_best_H"]) == [20.0, 30.0]
    assert list(t["public_best_H"]) == [18.0, 40.0]
    assert list(t["gap_best_H"]) == [2.0, -10.0]


def test_tf_vaegans_epoch_is_two_of_our_passes():
    public = fidelity.public_curve("tf-vaegan", pd.DataFrame([_public(5, 5.0), _public(10, 18.0)]))
    assert list(public["epoch"]) == [10, 20] and list(public["public_epoch"]) == [5, 10]
    t = fidelity.table(fidelity.ours_curve(pd.DataFrame([_ours(10, 20.0), _ours(20, 30.0)])), public)
    assert list(zip(t["epoch"], t["public_epoch"], t["gap_H"])) == [(10, 5, 15.0), (20, 10, 12.0)]
    with pytest.raises(ValueError, match="no public code known"):
        fidelity.public_curve("bsegn", pd.DataFrame([_public(5, 5.0)]))


def test_missing_columns_and_repeated_epochs_are_refused_by_name():
    with pytest.raises(ValueError, match="train_epochs"):
        fidelity.ours_curve(pd.DataFrame([_ours(10, 20.0)]).drop(columns=["train_epochs"]))
    with pytest.raises(ValueError, match="--public ce-gzsl.*epoch"):
        fidelity.public_curve("ce-gzsl", pd.DataFrame([_public(10, 1.0)]).drop(columns=["epoch"]))
    ours = fidelity.ours_curve(pd.DataFrame([_ours(10, 20.0), _ours(10, 21.0)]))
    with pytest.raises(ValueError, match="two evaluations"):
        fidelity.table(ours, fidelity.public_curve("tf-vaegan", pd.DataFrame([_public(10, 1.0)])))


def test_the_committed_fidelity_table_is_what_its_committed_inputs_give(tmp_path):
    out = tmp_path / "fidelity.csv"
    done = subprocess.run([sys.executable, "-m", "bsegn.research.fidelity", "records/fidelity_runs.csv", "--public",
                           "tf-vaegan=records/tfvaegan_runs.csv", "ce-gzsl=records/public/cegzsl_curves.csv",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(ROOT / "records" / "fidelity.csv"))


def test_a_malformed_public_argument_is_named(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bsegn.research.fidelity", "records/fidelity_runs.csv", "--public",
                           "records/tfvaegan_runs.csv", "--out", str(tmp_path / "f.csv")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "METHOD=CSV" in done.stderr
