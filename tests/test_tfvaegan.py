"""The TF-VAEGAN comparison: its published commands and its logs read into our report rows."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bsegn import report
from bsegn.research import tfvaegan

ROOT = Path(__file__).resolve().parents[1]

LOG = """Random Seed:  3483
# of training samples:  7057
Generator(
  (fc1): Linear(in_features=624, out_features=4096, bias=True)
)
[0/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 10.0 s 
[1/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 20.0 s GZSL: seen=0.8000, unseen=0.2000, h=0.3200 ZSL: unseen accuracy=0.3000
[2/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 30.0 s 
[3/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 45.5 s GZSL: seen=0.7000, unseen=0.5000, h=0.5833 ZSL: unseen accuracy=0.5500
[4/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 50.0 s 
"""


# the same run carried on to epoch 60 without a better evaluation: CUB's minimum schedule
LOG_60 = LOG + "".join(f"[{e}/300]  Loss_D: -1.0 Loss_G: 2.0, Wasserstein_dist:3.0, vae_loss_seen:4.0 time 60.0 s \n"
                       for e in range(5, 60))


def test_parse_log_reads_each_evaluation_in_percent_with_one_based_epochs():
    curve = tfvaegan.parse_log(LOG)
    assert curve["epoch"].tolist() == [2, 4]
    assert curve["seconds"].tolist() == [20.0, 45.5]
    assert curve.loc[1, ["T1", "U", "S", "H"]].tolist() == pytest.approx([55.0, 50.0, 70.0, 58.33])
    assert tfvaegan.seed_of(LOG) == 3483
    assert tfvaegan.epochs_run(LOG) == 5


def test_a_log_without_evaluations_or_seed_is_refused_by_name():
    with pytest.raises(ValueError, match="cub.log: no evaluated epoch"):
        tfvaegan.parse_log("[0/300]  Loss_D: 1 time 3.0 s\n", source="cub.log")
    with pytest.raises(ValueError, match="cub.log: no 'Random Seed"):
        tfvaegan.seed_of("[0/300]\n", source="cub.log")


def test_best_rows_take_each_runs_best_h_as_a_test_selected_row():
    curves = tfvaegan.collect({"SYN_CUB": LOG, "SYN_AWA2": LOG.replace("3483", "9182").replace("0.5833", "0.1000")})
    best = tfvaegan.best_rows(curves)
    assert list(best.columns) == report.PROTOCOL_COLUMNS
    by_ds = best.set_index("dataset")
    assert by_ds.loc["SYN_CUB", "H"] == pytest.approx(58.33)
    assert by_ds.loc["SYN_AWA2", "H"] == pytest.approx(32.0)  # its epoch-2 evaluation is now the better one
    assert by_ds.loc["SYN_AWA2", "seed"] == 9182
    assert set(best["variant"]) == {"tfvaegan"} and set(best["protocol"]) == {"test_selected"}


def test_merge_replaces_only_the_tfvaegan_rows_of_the_collected_datasets():
    from bsegn.report import replace_rows
    old = pd.DataFrame([
        {"dataset": "SYN_CUB", "variant": "bsegn", "seed": 3, "protocol": "honest", "T1": 1, "U": 1, "S": 1, "H": 1},
        {"dataset": "SYN_CUB", "variant": "tfvaegan", "seed": 1, "protocol": "test_selected", "T1": 1, "U": 1, "S": 1, "H": 1},
        {"dataset": "SYN_SUN", "variant": "tfvaegan", "seed": 1, "protocol": "test_selected", "T1": 1, "U": 1, "S": 1, "H": 2},
    ])
    new = tfvaegan.best_rows(tfvaegan.collect({"SYN_CUB": LOG}))
    merged = replace_rows(old, new)
    assert len(merged) == 3
    assert merged[(merged.dataset == "SYN_CUB") & (merged.variant == "tfvaegan")]["seed"].tolist() == [3483]
    assert merged[merged.dataset == "SYN_SUN"]["H"].tolist() == [2]


def test_command_is_the_published_line_of_the_benchmark_the_dataset_is_built_on():
    cmd = tfvaegan.command("SYN_AWA2", "/data/tfv")
    flags = cmd[2:]
    assert flags[flags.index("--dataset") + 1] == "SYN_AWA2"
    assert flags[flags.index("--dataroot") + 1] == "/data/tfv"
    assert flags[flags.index("--syn_num") + 1] == "1800" and "--freeze_dec" in flags
    assert tfvaegan.command("CUB", "d")[2:-4] == tfvaegan.command("SYN_CUB", "d")[2:-4]
    with pytest.raises(ValueError, match="SYN_SHIFT"):
        tfvaegan.command("SYN_SHIFT", "d")


def test_the_committed_curves_are_what_the_committed_logs_give(tmp_path):
    logs = sorted((ROOT / "records" / "tfvaegan").glob("*.log"))
    assert logs, "records/tfvaegan/*.log: the logs of the runs reported in docs/METHOD.md"
    out = tmp_path / "runs.csv"
    args = [f"{p.stem}={p}" for p in logs]
    done = subprocess.run([sys.executable, "-m", "bsegn.research.tfvaegan", "collect", *args, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    key = ["dataset", "seed", "epoch"]
    got = pd.read_csv(out).sort_values(key).reset_index(drop=True)
    committed = pd.read_csv(ROOT / "records" / "tfvaegan_runs.csv").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, committed)


def test_collect_names_a_malformed_argument_and_a_missing_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bsegn.research.tfvaegan", "collect", "SYN_CUB"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "DATASET=LOG" in done.stderr
    log = tmp_path / "cub.log"
    log.write_text(LOG)
    missing = tmp_path / "nowhere.csv"
    done = subprocess.run([sys.executable, "-m", "bsegn.research.tfvaegan", "collect", f"SYN_CUB={log}",
                           "--out", str(tmp_path / "runs.csv"), "--realistic", str(missing)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and f"--realistic {missing}" in done.stderr and "Traceback" not in done.stderr


def test_collect_writes_the_best_rows_into_the_realistic_csv(tmp_path):
    log = tmp_path / "cub.log"
    log.write_text(LOG_60)
    realistic = tmp_path / "realistic.csv"
    pd.DataFrame([{"dataset": "SYN_CUB", "variant": "bsegn", "seed": 3, "protocol": "honest",
                   "T1": 50.0, "U": 40.0, "S": 80.0, "H": 53.33}]).to_csv(realistic, index=False)
    done = subprocess.run([sys.executable, "-m", "bsegn.research.tfvaegan", "collect", f"SYN_CUB={log}",
                           "--out", str(tmp_path / "runs.csv"), "--realistic", str(realistic)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(realistic)
    assert rows["variant"].tolist() == ["bsegn", "tfvaegan"]
    assert rows.loc[1, "H"] == pytest.approx(58.33) and rows.loc[1, "seed"] == 3483


def test_a_run_short_of_the_minimum_schedule_gets_no_realistic_row(tmp_path):
    """5 of CUB's 60 epochs: its curve is kept, but its best H is only a lower bound."""
    assert tfvaegan.epochs_run(LOG) == 5 and tfvaegan.epochs_run(LOG_60) == 60
    curves = tfvaegan.collect({"SYN_CUB": LOG, "SYN_AWA2": LOG})  # AWA2 needs 30
    assert not tfvaegan.long_enough(curves).any()
    assert tfvaegan.long_enough(tfvaegan.collect({"SYN_CUB": LOG_60})).all()
    log = tmp_path / "cub.log"
    log.write_text(LOG)
    realistic = tmp_path / "realistic.csv"
    before = pd.DataFrame([{"dataset": "SYN_CUB", "variant": "tfvaegan", "seed": 1, "protocol": "test_selected",
                            "T1": 1.0, "U": 1.0, "S": 1.0, "H": 1.0}])
    before.to_csv(realistic, index=False)
    done = subprocess.run([sys.executable, "-m", "bsegn.research.tfvaegan", "collect", f"SYN_CUB={log}",
                           "--out", str(tmp_path / "runs.csv"), "--realistic", str(realistic)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "5 generator epochs run, 60 needed" in done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(realistic), before)  # the earlier row stays
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 2  # its curve is still written


def test_public_rows_are_the_best_evaluation_of_each_run_that_settled():
    """A run's best is its row once three evaluations after it brought no new best, or it ran its
    published --nepoch (CUB 300); a run still rising when it stopped has no row (a lower bound)."""
    from bsegn.research import comparison
    assert tfvaegan.published_epochs("SYN_CUB") == 300 and tfvaegan.published_epochs("AWA2") == 120

    def run(seed, hs, epochs_run):
        return [{"dataset": "SYN_CUB", "seed": seed, "epoch": 5 * (i + 1), "T1": 40.0 + i, "U": 1.0, "S": 2.0,
                 "H": h, "epochs_run": epochs_run} for i, h in enumerate(hs)]

    curves = pd.DataFrame(run(1, [30.0, 50.0, 49.0, 50.0, 48.0], 25) + run(2, [30.0, 50.0, 49.0, 48.0], 20)
                          + run(3, [30.0, 40.0], 300))
    rows = tfvaegan.public_rows(curves.sample(frac=1.0, random_state=0))  # epoch order is its own business
    assert list(rows.columns) == comparison.COLUMNS
    assert rows.to_dict("records") == [
        {"dataset": "SYN_CUB", "method": "tf-vaegan-public", "seed": 1, "protocol": "test_selected", "T1": 41.0,
         "U": 1.0, "S": 2.0, "H": 50.0, "experiment": ""},
        {"dataset": "SYN_CUB", "method": "tf-vaegan-public", "seed": 3, "protocol": "test_selected", "T1": 41.0,
         "U": 1.0, "S": 2.0, "H": 40.0, "experiment": ""}]
    assert tfvaegan.public_rows(curves[curves["seed"] == 2]).empty
