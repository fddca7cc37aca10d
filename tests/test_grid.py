"""The grid as DVC experiments (bsegn.grid): a 2 x 2 grid on a local Ray instance, against a git
remote and a DVC remote in a temporary folder; one of its tasks is killed mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import test_pipeline as tp
from bsegn import grid
from bsegn.errors import PipelineError


def test_a_tasks_name_says_what_it_runs_and_differs_by_its_overrides():
    plain, other = grid.Task("bsegn", "SYN", 3), grid.Task("bsegn", "SYN", 3, ("train.SYN.epochs=2",))
    assert plain.name == "bsegn-SYN-s3"
    assert other.name.startswith("bsegn-SYN-s3-") and other.name != plain.name
    assert other.name == grid.Task("bsegn", "SYN", 3, ("train.SYN.epochs=2",)).name  # stable: retries find it
    assert other.exp_args()[-2:] == ["-S", "++train.SYN.epochs=2"]
    assert grid.Task("bsegn", "SYN", 3, ("methods.yaml:bsegn.CUB.train.epochs=3",)).exp_args()[-1] == \
        "methods.yaml:++bsegn.CUB.train.epochs=3"


def test_a_bad_override_stops_the_grid_before_any_task(monkeypatch):
    monkeypatch.chdir(tp.ROOT)
    with pytest.raises(PipelineError, match="train.SYN.epochz"):
        grid.plan(["bsegn"], ["SYN"], [0], ["train.{ds}.epochz=2"])
    with pytest.raises(PipelineError, match="unknown"):
        grid.plan(["bsegn-x"], ["SYN"], [0], [])
    assert [t.name for t in grid.plan(["f-clswgan", "bsegn"], ["SYN"], [0, 1], [])] == [
        "f-clswgan-SYN-s0", "f-clswgan-SYN-s1", "bsegn-SYN-s0", "bsegn-SYN-s1"]


def _repo(root: Path) -> Path:
    """The tiny project of test_pipeline, committed, with a bare git remote and a DVC remote."""
    (root / "repo").mkdir()
    repo = tp.new_project(root / "repo")
    tp.sh(tp.DVC + ["remote", "add", "-d", "team", str(root / "dvc-remote")], repo)
    tp.sh(["git", "add", "-A"], repo)
    tp.sh(["git", "commit", "-qm", "tiny"], repo)
    tp.sh(["git", "init", "-q", "--bare", "-b", "main", str(root / "origin.git")], repo)
    tp.sh(["git", "remote", "add", "origin", str(root / "origin.git")], repo)
    tp.sh(["git", "push", "-q", "origin", "main"], repo)
    return repo


def _dvc_exp_run_of(name: str) -> int | None:
    """The pid of a running `dvc exp run -n NAME`, if there is one."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"exp" in argv and b"run" in argv and name.encode() in argv:
            return int(proc.name)
    return None


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the task's worker through /proc")
def test_grid_runs_as_experiments_a_killed_task_is_retried_and_a_clone_pulls_them(tmp_path):
    repo = _repo(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(repo), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    cmd = [sys.executable, "-m", "bsegn.grid", "run", "--methods", "f-clswgan", "bsegn", "--datasets", "TINY",
           "--seeds", "0", "1", "--set", "train.common.epochs=1", "--workdir", str(tmp_path / "work")]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill the worker of one task while its `dvc exp run` runs: Ray must rerun it, and only once
    victim = next(line.split(":")[0] for line in subprocess.run(
        cmd + ["--dry"], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
        if line.startswith("bsegn-TINY-s1"))
    killed, deadline = False, time.time() + 300
    while not killed and proc.poll() is None and time.time() < deadline:
        pid = _dvc_exp_run_of(victim)
        if pid is not None:
            time.sleep(3)  # into its stages
            if _dvc_exp_run_of(victim) == pid:
                os.kill(_parent(pid), signal.SIGKILL)
                killed = True
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert killed, f"never saw {victim}'s dvc exp run:\n{out}"
    assert proc.returncode == 0, out
    assert "done: 4 of 4" in out and "runs per hour" in out, out

    refs = tp.sh(["git", "ls-remote", str(tmp_path / "origin.git"), "refs/exps/*"], repo).stdout.split("\n")
    pushed = sorted(r.rsplit("/", 1)[1] for r in refs if r)
    assert len(pushed) == 4 and victim in pushed and len(set(pushed)) == 4, pushed

    # a teammate's clone: the experiments and their metrics come with `dvc exp pull`
    clone = tmp_path / "clone"
    tp.sh(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)], tmp_path)
    tp.sh(tp.DVC + ["exp", "pull", "origin", "-A"], clone)
    shown = json.loads(tp.sh(tp.DVC + ["exp", "show", "--json"], clone).stdout)
    h = {}
    for exp in (e for top in shown for e in top.get("experiments") or []):
        for rev in exp.get("revs") or []:
            h[rev["name"]] = rev["data"]["metrics"]["reports/metrics.json"]["data"]["TINY"]["H"]
    assert sorted(h) == pushed and all(0 <= v <= 100 for v in h.values())

    # rows from the experiments, each naming its experiment
    subprocess.run([sys.executable, "-m", "bsegn.grid", "collect", "--out", "runs.csv"], cwd=clone, env=env,
                   check=True, capture_output=True)
    rows = pd.read_csv(clone / "runs.csv")
    assert sorted(rows["experiment"]) == pushed
    assert sorted(zip(rows["variant"], rows["seed"])) == sorted(
        (m, s) for m in ("bsegn", "f-clswgan") for s in (0, 1))
    assert dict(zip(rows["experiment"], rows["H"].round(2))) == {k: round(v, 2) for k, v in h.items()}
