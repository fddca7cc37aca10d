"""End to end: `dvc repro` in a temporary git repo on a tiny synthetic config.

Checks what a user relies on: outputs and reports appear; a second repro runs nothing;
a classifier param reruns only classify + report; a training param reruns train onward;
a package module is a dependency; push to a local remote, fresh clone, pull, nothing is
recomputed; bad input fails with a clear message and leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]

TINY = {
    "base": {"datasets": ["TINY"], "seeds": [0], "device": "cpu"},
    "download": {"cache_dir": ".cache/downloads", "sources": {"TINY": {"kind": "synthetic", "synthetic": {
        "seed": 1, "n_seen": 8, "n_unseen": 4, "n_val": 2, "per_class": 20, "d_att": 6, "d_latent": 4,
        "d_feat": 16, "n_groups": 3}}}},
    "prepare": {"feature_scaling": "minmax", "normalize_attributes": True},
    "train": {"common": {"epochs": 2, "hidden": 32, "fem_hidden": 32, "lr": 1e-3, "cls_pretrain_epochs": 2}},
    "generate": {"common": {"syn_num": 20}},
    "classify": {"common": {"epochs": 2}},
}


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def ran(res: subprocess.CompletedProcess) -> set[str]:
    """Names of the stages a `dvc repro` actually ran."""
    return set(re.findall(r"Running stage '([^']+)'", res.stdout + res.stderr))


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git + DVC repo holding this project's code and the tiny params, reproduced once."""
    repo = tmp_path_factory.mktemp("project")
    for name in ("bsegn", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    write_params(repo, TINY)
    sh(["git", "init", "-q"], repo)
    sh(DVC + ["init", "-q"], repo)
    sh(DVC + ["config", "core.analytics", "false"], repo)
    first = sh(DVC + ["repro"], repo)
    assert ran(first) == {"download@TINY", "prepare@TINY", "train@TINY-0", "generate@TINY-0",
                          "classify@TINY-0", "report"}
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny"], repo)
    return repo


def test_outputs_and_reports(project):
    metrics = json.loads((project / "runs/TINY/seed0/metrics.json").read_text())
    for key in ("T1", "U", "S", "H"):
        assert 0.0 <= metrics[key] <= 100.0
    results = pd.read_csv(project / "reports/results.csv")
    assert list(results[["dataset", "seed"]].itertuples(index=False, name=None)) == [("TINY", 0)]
    assert results.loc[0, "H"] == pytest.approx(metrics["H"], abs=1e-3)
    assert "| TINY |" in (project / "reports/results.md").read_text()
    shown = sh(DVC + ["metrics", "show", "--json"], project).stdout
    assert '"H"' in shown and "TINY" in shown


def test_second_repro_runs_nothing(project):
    assert ran(sh(DVC + ["repro"], project)) == set()


def test_classifier_param_reruns_only_classify_and_report(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classify"]["common"]["epochs"] = 3
    write_params(project, params)
    try:
        assert ran(sh(DVC + ["repro"], project)) == {"classify@TINY-0", "report"}
    finally:
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def test_training_param_reruns_train_onward(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["lr"] = 5e-4
    write_params(project, params)
    try:
        assert ran(sh(DVC + ["repro"], project)) == {"train@TINY-0", "generate@TINY-0", "classify@TINY-0", "report"}
    finally:
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def test_package_module_is_a_dependency(project):
    metrics_py = project / "bsegn/metrics.py"
    original = metrics_py.read_text()
    metrics_py.write_text(original + "\n# touched by the test\n")
    try:
        status = sh(DVC + ["status", "--json"], project).stdout
        changed = set(json.loads(status))
        assert changed == {"classify@TINY-0"}, changed  # classify imports metrics; train does not
    finally:
        metrics_py.write_text(original)
    assert json.loads(sh(DVC + ["status", "--json"], project).stdout) == {}


def test_team_sharing_through_a_remote(project, tmp_path):
    remote = tmp_path / "remote"
    sh(DVC + ["remote", "add", "-d", "-f", "team", str(remote)], project)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "remote", "--allow-empty"], project)
    sh(DVC + ["push"], project)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    sh(DVC + ["pull"], clone)
    assert (clone / "runs/TINY/seed0/model.pt").read_bytes() == (project / "runs/TINY/seed0/model.pt").read_bytes()
    assert ran(sh(DVC + ["repro"], clone)) == set()

    clone2 = tmp_path / "clone2"
    sh(["git", "clone", "-q", str(project), str(clone2)], tmp_path)
    assert ran(sh(DVC + ["repro", "--pull"], clone2)) == set()
    assert (clone2 / "reports/metrics.json").exists()


def test_bad_param_fails_with_the_key_named(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["epochs"] = "ten"
    write_params(project, params)
    try:
        res = sh([sys.executable, "stages/train.py", "--dataset", "TINY", "--seed", "0"], project, check=False)
        assert res.returncode == 2
        assert "train.common.epochs" in res.stderr and "integer" in res.stderr
        assert "Traceback" not in res.stderr
        res = sh([sys.executable, "stages/prepare.py", "--dataset", "NOPE"], project, check=False)
        assert res.returncode == 2 and "unknown dataset 'NOPE'" in res.stderr
    finally:
        write_params(project, TINY)


def test_killed_stage_leaves_no_output(project, tmp_path):
    """SIGKILL during training: the previous model stays, no partial file appears."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["epochs"] = 10_000
    write_params(project, params)
    model = project / "runs/TINY/seed0/model.pt"
    before = model.read_bytes()
    try:
        proc = subprocess.Popen([sys.executable, "stages/train.py", "--dataset", "TINY", "--seed", "0"], cwd=project,
                                env={**os.environ, "PYTHONPATH": str(project)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(6)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert model.read_bytes() == before
        assert not list(model.parent.glob(".*.tmp")), "temporary file left behind"
    finally:
        write_params(project, TINY)
