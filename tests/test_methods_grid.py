"""tools/methods_grid.py (the GPU runs behind records/methods_runs.csv): its split runs give the
rows `bsegn.research.ablation run` gives."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "train.{ds}.epochs=2", "--set", "classify.{ds}.epochs=3"]


def _grid(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/methods_grid.py", str(out), "--workers", "2", "--plan", "grid",
                           "--methods", "f-clswgan", "--seeds", "3", "4", "--datasets", "SYN", *TINY, *extra],
                          cwd=ROOT, capture_output=True, text=True)


def test_split_runs_give_the_rows_of_ablation_run(tmp_path):
    done = _grid(tmp_path / "grid")
    assert done.returncode == 0, done.stderr
    ours = pd.read_csv(tmp_path / "grid" / "rows.csv")
    ref_csv = tmp_path / "ablation.csv"
    ref = subprocess.run([sys.executable, "-m", "bsegn.research.ablation", "run", "--datasets", "SYN", "--variants", "f-clswgan",
                          "--seeds", "3", "4", "--workers", "2", *TINY, "--out", str(ref_csv)],
                         cwd=ROOT, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    ref_rows = pd.read_csv(ref_csv).sort_values("seed", ignore_index=True)
    ours = ours.sort_values("seed", ignore_index=True)[list(ref_rows.columns)]
    pd.testing.assert_frame_equal(ours, ref_rows)


def test_a_screen_job_gives_the_row_of_ablation_run_on_the_validation_split(tmp_path):
    """--plan screen runs a variant of a variants file in a process of its own (which must load
    the file itself) and writes the validation row `ablation run --split val` writes."""
    variants = tmp_path / "v.yaml"
    variants.write_text("tiny_fem:\n  base.method: bsegn\n  train.{ds}.fem_space: contrastive\n")
    common = ["--datasets", "SYN", *TINY]
    done = subprocess.run([sys.executable, "tools/methods_grid.py", str(tmp_path / "grid"), "--workers", "2",
                           "--plan", "screen", "--variants-file", str(variants), "--variants", "tiny_fem",
                           "--screen-seeds", "0", *common], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours = pd.read_csv(tmp_path / "grid" / "screen.csv")
    ref_csv = tmp_path / "ablation.csv"
    ref = subprocess.run([sys.executable, "-m", "bsegn.research.ablation", "run", "--split", "val", "--variants-file",
                          str(variants), "--variants", "tiny_fem", "--seeds", "0", "--workers", "1", *common,
                          "--out", str(ref_csv)], cwd=ROOT, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    ref_rows = pd.read_csv(ref_csv)
    assert set(ours["group"]) == {"screen"}
    pd.testing.assert_frame_equal(ours[list(ref_rows.columns)], ref_rows)
    again = subprocess.run([sys.executable, "tools/methods_grid.py", str(tmp_path / "again"), "--plan", "screen",
                            "--variants-file", str(variants), "--variants", "tiny_fem", "--screen-seeds", "0",
                            "--skip", str(ref_csv), "--dry", *common], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "0 jobs" in again.stdout  # a screen CSV's rows are not rerun


def test_with_no_time_left_no_job_starts_and_each_is_logged_as_skipped(tmp_path):
    done = _grid(tmp_path / "grid", "--deadline", "0")  # the lease is over: no run of any cost fits
    assert done.returncode == 0, done.stderr
    skipped = [line.split()[2].rstrip(":") for line in (tmp_path / "grid" / "done.log").read_text().splitlines()
               if " SKIP " in line]
    assert sorted(skipped) == sorted(f"grid_f-clswgan_SYN_{s}_{part}" for s in (3, 4) for part in ("val", "test"))
    assert not list((tmp_path / "grid" / "logs").iterdir()) and not (tmp_path / "grid" / "rows.csv").exists()
    assert sorted(p.name for p in (tmp_path / "grid" / "sel").iterdir()) == [
        "grid_f-clswgan_SYN_3.failed", "grid_f-clswgan_SYN_4.failed"]


def test_a_bad_override_is_refused_by_name_before_any_job_starts(tmp_path):
    done = _grid(tmp_path / "grid", "--set", "train.{ds}.lr=-1")
    assert done.returncode != 0 and "train.SYN.lr: must be >= 0.0" in done.stderr
    assert not (tmp_path / "grid" / "rows.csv").exists() and not list((tmp_path / "grid" / "logs").iterdir())


def test_only_a_failed_allocation_or_library_load_sends_a_job_back_to_the_queue(tmp_path):
    grid = load_tool("methods_grid")
    log = tmp_path / "job.log"
    log.write_text("Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA out of memory. "
                   "Tried to allocate 5.25 GiB. GPU 0 has a total capacity of 139.81 GiB\n")
    assert grid.worth_another_try(log)
    log.write_text("Intel oneMKL FATAL ERROR: Cannot load /opt/torch/.venv/lib/python3.12/site-packages/torch/lib/"
                   "libtorch_cpu.so.\n")  # as five halves printed on an H200 machine, exit status 2
    assert grid.worth_another_try(log)
    log.write_text("Traceback (most recent call last):\nRuntimeError: grid_x_val: its validation half failed\n")
    assert not grid.worth_another_try(log)
    assert not grid.worth_another_try(tmp_path / "never_written.log")


def test_a_retried_job_waits_its_turn_and_the_others_go_first():
    grid = load_tool("methods_grid")
    queue = [{"id": "a"}, {"id": "b"}]
    not_before = {"a": 100.0}  # a failed once: not before t=100
    assert grid.next_startable(queue, not_before, now=50.0)["id"] == "b"
    assert grid.next_startable(queue, not_before, now=50.0) is None and queue == [{"id": "a"}]
    assert grid.next_startable(queue, not_before, now=100.0)["id"] == "a" and queue == []


def test_jobs_that_would_end_after_the_deadline_are_dropped_with_their_other_half():
    grid = load_tool("methods_grid")
    queue = [{"id": "cub_val", "sel": "s/cub.json", "part": "val", "cost": 1000},
             {"id": "sun_screen", "part": "screen", "cost": 300},
             {"id": "cub_test", "sel": "s/cub.json", "part": "test", "cost": 400},
             {"id": "flo_screen", "part": "screen", "cost": 800}]
    # 4 workers sharing 100 units/s: a job of cost c takes 0.04 c s; 30 s are left
    dropped = grid.too_late(queue, left_s=30.0, workers=4, rate=100.0)
    assert [j["id"] for j in dropped] == ["cub_val", "cub_test", "flo_screen"]
    assert [j["id"] for j in queue] == ["sun_screen"]
    assert grid.too_late(queue, left_s=12.0, workers=4, rate=100.0) == [] and len(queue) == 1
    assert [j["id"] for j in grid.too_late(queue, left_s=11.9, workers=4, rate=100.0)] == ["sun_screen"]


def test_a_job_the_trainer_stopped_on_a_diverged_loss_is_recorded_where_it_diverged(tmp_path):
    """The trainer's own TrainingDiverged message (made here by bsegn.trainer.check_finite, so a
    change of its wording fails this test) gives the epoch, the loss and its value; each such job
    adds a row to OUT/diverged.csv; any other failure is no divergence."""
    from bsegn import trainer
    grid = load_tool("methods_grid")
    with pytest.raises(trainer.TrainingDiverged) as err:
        trainer.check_finite({"epoch": 16, "g_adv": -1.0, "vae": 1.5e10}, "grid_f-vaegan_SYN_SUN_5_test")
    log = tmp_path / "job.log"
    log.write_text(f"Traceback (most recent call last):\n  ...\nbsegn.trainer.TrainingDiverged: {err.value}\n")
    assert grid.divergence(log) == {"epoch": 16, "loss": "vae", "value": 1.5e10}
    job = {"variant": "f-vaegan", "ds": "SYN_SUN", "seed": 5, "part": "test", "group": "grid"}
    grid.record_divergence(tmp_path, job, grid.divergence(log))
    with pytest.raises(trainer.TrainingDiverged) as err:
        trainer.check_finite({"epoch": 32, "g_adv": float("nan")}, "grid_f-vaegan_SYN_SUN_3_val")
    log.write_text(f"bsegn.trainer.TrainingDiverged: {err.value}\n")
    grid.record_divergence(tmp_path, {**job, "seed": 3, "part": "val"}, grid.divergence(log))
    rows = pd.read_csv(tmp_path / "diverged.csv")
    assert rows[["seed", "part", "epoch", "loss"]].values.tolist() == [[5, "test", 16, "vae"], [3, "val", 32, "g_adv"]]
    assert rows["value"].iloc[0] == 1.5e10 and pd.isna(rows["value"].iloc[1])
    log.write_text("Traceback (most recent call last):\nRuntimeError: grid_x_val: its validation half failed\n")
    assert grid.divergence(log) is None and grid.divergence(tmp_path / "never_written.log") is None


def test_fidelity_jobs_are_those_of_the_methods_and_datasets_asked_for(tmp_path, monkeypatch):
    """--plan fidelity --methods tf-vaegan queues no ce-gzsl point (a probe of one method's switch
    must not rerun another's points)."""
    import argparse
    grid = load_tool("methods_grid")
    monkeypatch.setattr(grid, "FIDELITY", {("tf-vaegan", "SYN"): [2], ("ce-gzsl", "SYN"): [2, 3]})
    args = argparse.Namespace(set=[], datasets=["SYN"], methods=["tf-vaegan"], plan=["fidelity"], seeds=[3],
                              fidelity_at=0, order="long", skip=[], variants=[], screen_seeds=[0],
                              variants_file=None)
    assert [j["id"] for j in grid.plan(args, tmp_path)] == ["fidelity_e2_tf-vaegan_SYN_3"]
    args.methods = ["tf-vaegan", "ce-gzsl"]
    assert len(grid.plan(args, tmp_path)) == 3
