"""End to end: `dvc repro` in a temporary git repo on a tiny synthetic config.

Checks what a user relies on: outputs and reports appear; a second repro runs nothing;
a classifier param reruns only classify + report; a training param reruns train onward;
a package module is a dependency; push to a local remote, fresh clone, pull, nothing is
recomputed; bad input fails with a clear message and leaves nothing half-written.
"""

from __future__ import annotations

import copy
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
from bsegn import config
from bsegn.research import ablation
from bsegn.config import apply_overrides
from shipped import PARAMS, synthetic_cfg

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
# what `dvc repro` runs before the per-seed stages; a test that runs one of them by hand runs it first
SETTINGS = [sys.executable, "-m", "stages.settings", "--dataset", "TINY"]

def _tiny_params() -> dict:
    """The shipped params.yaml, shrunk to a two-seed run on a tiny embedded benchmark. The
    model is the shipped BSeGN (FEM, cycle, mFIM on), only smaller and shorter."""
    p = copy.deepcopy(PARAMS)
    p["base"].update(datasets=["TINY"], seeds=[0, 1], device="cpu")
    syn = {**p["download"]["sources"]["SYN"]["synthetic"], "seed": 1, "n_seen": 8, "n_unseen": 4, "n_val": 2,
           "per_class": 20, "d_att": 6, "d_latent": 4, "d_feat": 16, "n_groups": 3}
    p["download"]["sources"] = {
        "TINY": {"kind": "synthetic", "synthetic": syn},
        # a real-benchmark-like source on a host that never resolves: the offline case
        "NONET": {"kind": "url", "url": "http://benchmarks.example.invalid/xlsa17.zip"}}
    p["train"] = {"common": {**p["train"]["common"], "epochs": 2, "hidden": 32, "fem_hidden": 32, "lr": 1e-3,
                             "decoder_lr": 1e-3, "fem_lr": 1e-3, "cls_pretrain_epochs": 2},
                  # every method's networks small too (CE-GZSL's design sets its own widths and batch)
                  "TINY": {"batch_size": 64, "embed_dim": 32, "embed_out_dim": 16, "embed_hidden": 32,
                           "cls_pretrain_epochs": 2}}
    p["generate"] = {"common": {**p["generate"]["common"], "syn_num": 20}}
    p["classify"] = {"common": {**p["classify"]["common"], "epochs": 2}}
    return p


TINY = _tiny_params()


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def per_seed(*stages: str) -> set[str]:
    """Stage names for TINY and both seeds, e.g. per_seed("train") -> {"train@TINY-0", "train@TINY-1"}."""
    return {f"{st}@TINY-{seed}" for st in stages for seed in (0, 1)}


def ran(res: subprocess.CompletedProcess) -> set[str]:
    """Names of the stages a `dvc repro` actually ran."""
    return set(re.findall(r"Running stage '([^']+)'", res.stdout + res.stderr))


def restored(res: subprocess.CompletedProcess) -> set[str]:
    """Names of the stages a `dvc repro` restored from DVC's run-cache instead of running."""
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", res.stdout + res.stderr))


def write_params(repo: Path, params: dict) -> None:
    """``params`` as load_params returns it -> params.yaml and the methods.yaml beside it."""
    params = dict(params)
    if "methods" in params:  # else the repo's methods.yaml stays
        (repo / "methods.yaml").write_text(yaml.safe_dump(params.pop("methods"), sort_keys=False))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def new_project(repo: Path) -> Path:
    """``repo``: a new git + DVC repo (branch main) holding this project's code and the tiny
    params, nothing committed or run yet."""
    for name in ("bsegn", "stages", "data/splits"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "docs/published_results.csv", "data/local/README.md",
                 "data/local/.gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    write_params(repo, TINY)
    sh(["git", "init", "-q", "-b", "main"], repo)
    sh(DVC + ["init", "-q"], repo)
    sh(DVC + ["config", "core.analytics", "false"], repo)
    return repo


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git + DVC repo holding this project's code and the tiny params, reproduced once."""
    repo = new_project(tmp_path_factory.mktemp("project"))
    first = sh(DVC + ["repro"], repo)
    assert ran(first) == {"download@TINY", "prepare@TINY", "settings@TINY", "report"} | per_seed(
        "train", "generate", "train_val", "classify", "figures")
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny"], repo)
    return repo


def test_realistic_cub_is_built_offline_with_the_real_split_sizes(project):
    """download + prepare of SYN_CUB through DVC, from the shipped source: the real CUB splits."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["download"]["sources"]["SYN_CUB"]
    params = copy.deepcopy(TINY)
    params["base"]["datasets"] = ["TINY", "SYN_CUB"]
    params["download"]["sources"]["SYN_CUB"] = shipped
    write_params(project, params)
    try:
        res = sh(DVC + ["repro", "prepare@SYN_CUB"], project)
        assert ran(res) == {"download@SYN_CUB", "prepare@SYN_CUB"}
        assert ("150 seen / 50 unseen classes, 7057 train / 1764 test-seen / 2967 test-unseen images, "
                "d_feat 2048, d_att 312") in res.stdout
        source = json.loads((project / "data/raw/SYN_CUB/source.json").read_text())
        assert source["split_files"]["att_splits.mat"] == source["files"]["att_splits.mat"]  # copied as is
    finally:
        write_params(project, TINY)
        shutil.rmtree(project / "data/raw/SYN_CUB", ignore_errors=True)
        (project / "data/prepared/SYN_CUB.npz").unlink(missing_ok=True)


def test_results_and_summary_recomputed_from_the_runs(project):
    runs = [json.loads((project / f"runs/TINY/seed{s}/metrics.json").read_text()) for s in (0, 1)]
    results = pd.read_csv(project / "reports/results.csv")
    assert list(results[["dataset", "seed"]].itertuples(index=False, name=None)) == [("TINY", 0), ("TINY", 1)]
    for i, m in enumerate(runs):
        for key in ("T1", "U", "S", "H"):
            assert 0.0 <= m[key] <= 100.0
            assert results.loc[i, key] == pytest.approx(m[key], abs=1e-3)
            assert results.loc[i, f"{key}_test_selected"] == pytest.approx(m["test_selected"][key], abs=1e-3)
        for key in ("U", "S", "H"):
            assert results.loc[i, f"{key}_cs"] == pytest.approx(m["calibrated"][key], abs=1e-3)
        # headline and test-selected numbers are never mixed: the latter can only be better
        assert m["test_selected"]["H"] >= m["H"] - 1e-6
    summary = pd.read_csv(project / "reports/summary.csv").iloc[0]
    assert summary["n_seeds"] == 2
    for key in ("T1", "U", "S", "H"):
        values = [m[key] for m in runs]
        assert summary[f"{key}_mean"] == pytest.approx(sum(values) / 2, abs=1e-3)
        assert summary[f"{key}_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=1e-3)
    md = (project / "reports/results.md").read_text()
    assert "| TINY | 2 |" in md and "test-selected" in md
    assert f"{summary['H_mean']:.1f} ± {summary['H_std']:.1f}" in md


def test_metrics_are_listed_by_dvc(project):
    shown = json.loads(sh(DVC + ["metrics", "show", "--json"], project).stdout)
    data = shown[""]["data"]["reports/metrics.json"]["data"]
    assert set(data["TINY"]) >= {"T1", "U", "S", "H"}
    # each stage's wall time is written beside its outputs, but is no metric: four timing
    # columns pushed T1/U/S/H off `dvc exp show`'s screen
    assert set(shown[""]["data"]) == {"reports/metrics.json"}
    runs = pd.read_csv(project / "reports/runs.csv")  # git-tracked: what each run cost, and on which CPU
    assert len(runs) == 8
    for stage in ("train", "train_val", "generate", "classify"):
        timing = json.loads((project / f"runs/TINY/seed1/{stage}_seconds.json").read_text())
        assert 0 < timing["seconds"] < 600, stage
        row = runs.query(f"seed == 1 and stage == '{stage}'")
        assert (row["seconds"].item(), row["cpu"].item()) == (timing["seconds"], timing["cpu"]), stage


def test_plots_page_renders_offline(project, tmp_path):
    out = tmp_path / "plots"
    sh(DVC + ["plots", "show", "--html-template", str(ROOT / "tools/plots_template.html"), "-o", str(out)], project)
    page = (out / "index.html").read_text()
    assert "wasserstein" in page and "reports_curves_classify_TINY-seed1_csv" in page
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts and not [s for s in scripts if "http" in s], scripts


def test_figures_are_valid_pngs(project):
    for seed in (0, 1):
        for name in ("per_class", "domain_confusion", "projection"):
            data = (project / f"reports/figures/TINY-seed{seed}/{name}.png").read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_second_repro_runs_nothing(project):
    assert ran(sh(DVC + ["repro"], project)) == set()


def test_classifier_param_reruns_only_classify_and_what_follows(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classify"]["common"]["epochs"] = 3
    write_params(project, params)
    try:
        assert ran(sh(DVC + ["repro"], project)) == {"settings@TINY", "report"} | per_seed("classify", "figures")
    finally:
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def test_training_param_reruns_train_onward_and_its_old_value_comes_back_from_the_run_cache(project):
    """A changed training param reruns train onward; set back, DVC's run-cache restores the first
    run's outputs instead of training again (an uncached output, such as the stages' timing files
    once were, turns the run-cache off for its stage)."""
    model = (project / "runs/TINY/seed0/model.pt").read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["lr"] = 5e-4
    write_params(project, params)
    try:
        assert ran(sh(DVC + ["repro"], project)) == {"settings@TINY", "report"} | per_seed(
            "train", "generate", "train_val", "classify", "figures")
    finally:
        write_params(project, TINY)
    back = sh(DVC + ["repro"], project)
    assert restored(back) == per_seed("train", "generate", "train_val", "classify")
    assert ran(back) == {"settings@TINY", "report"} | per_seed("figures")  # their outputs are git-tracked
    assert (project / "runs/TINY/seed0/model.pt").read_bytes() == model
    assert json.loads(sh(DVC + ["status", "--json"], project).stdout) == {}


def test_a_datasets_own_block_leaves_the_other_datasets_stages_up_to_date(project):
    """#24: the per-seed stages depend on their dataset's resolved settings (the settings
    stage's files), not on whole params sections. With a second dataset TINY2 trained, a change
    to train.TINY2.epochs reruns settings of both datasets, TINY's files come out the same, and
    then `dvc status` has every TINY stage up to date and TINY2's train out of date, for the
    changed settings file alone (under whole-section params deps TINY's train stages were out
    of date too)."""
    lock = (project / "dvc.lock").read_text()
    params = copy.deepcopy(TINY)
    params["base"]["datasets"] = ["TINY", "TINY2"]
    params["download"]["sources"]["TINY2"] = params["download"]["sources"]["TINY"]
    write_params(project, params)
    try:
        sh(DVC + ["repro", "train@TINY2-0"], project)  # TINY2's download, prepare, settings, one train
        tiny_settings = {p.name: p.read_bytes() for p in (project / "runs/TINY/settings").iterdir()}
        params["train"]["TINY2"] = {"epochs": 3}
        write_params(project, params)
        assert ran(sh(DVC + ["repro", "settings@TINY", "settings@TINY2"], project)) == {"settings@TINY",
                                                                                        "settings@TINY2"}
        assert {p.name: p.read_bytes() for p in (project / "runs/TINY/settings").iterdir()} == tiny_settings
        status = json.loads(sh(DVC + ["status", "--json"], project).stdout)
        assert not [name for name in status if "@TINY-" in name or name.endswith("@TINY")], status
        assert status["train@TINY2-0"] == [{"changed deps": {"runs/TINY2/settings/train.json": "modified"}}]
    finally:
        write_params(project, TINY)
        (project / "dvc.lock").write_text(lock)
        for name in ("data/raw/TINY2", "runs/TINY2"):
            shutil.rmtree(project / name, ignore_errors=True)
        (project / "data/prepared/TINY2.npz").unlink(missing_ok=True)
    assert json.loads(sh(DVC + ["status", "--json"], project).stdout) == {}  # TINY's files were never changed


def test_in_process_ablation_gives_the_pipelines_metrics(project):
    """One pipeline: the in-process ablation grid calls the stages' own functions, so a variant
    gives there the metrics `dvc repro` gives. Checked for the shipped BSeGN and for the
    f-CLSWGAN baseline, each set with the variant's overrides as the queued grid sets them;
    this also runs the baseline end to end through DVC."""
    prepared = str(project / "data/prepared/TINY.npz")
    try:
        for variant in ("bsegn", "f-clswgan"):
            write_params(project, apply_overrides(TINY, ablation.overrides(variant, "TINY")))
            sh(DVC + ["repro", "classify@TINY-0"], project)
            through_dvc = json.loads((project / "runs/TINY/seed0/metrics.json").read_text())
            selection = json.loads((project / "runs/TINY/seed0/validation.json").read_text())["selection"]
            in_process = ablation._run_one((TINY, variant, "TINY", 0, prepared, "test",
                                            ablation.overrides(variant, "TINY")))
            assert in_process == ablation.experiment_row(variant, "TINY", 0, through_dvc, selection), variant
    finally:
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def test_every_method_runs_as_an_experiment_and_exp_show_lists_them(project):
    """`dvc exp run --temp -S base.method=M` for each of the five methods: each runs through
    the stages, and `dvc exp show` gives each its H."""
    names = {m: f"method-{m}" for m in config.METHODS}
    for method, name in names.items():
        # one seed: each method through every stage, at half the two seeds' cost
        sh(DVC + ["exp", "run", "--temp", "-n", name, "-S", f"base.method={method}", "-S", "base.seeds=[0]"], project)
    shown = json.loads(sh(DVC + ["exp", "show", "--json"], project).stdout)
    got = {}
    for exp in (e for top in shown for e in top.get("experiments") or []):  # under their baseline commit
        for rev in exp.get("revs") or []:
            data = rev.get("data") or {}
            method = data["params"]["params.yaml"]["data"]["base"]["method"]
            metrics = data["metrics"]["reports/metrics.json"]["data"]["TINY"]
            got[rev.get("name")] = (method, metrics["H"])
    assert {n: m for n, (m, _) in got.items() if n in names.values()} == {n: m for m, n in names.items()}
    assert all(0 <= h <= 100 for _, h in got.values())
    assert len({h for n, (_, h) in got.items() if n in names.values()}) > 1  # the methods differ
    sh(DVC + ["exp", "remove", "--all-commits", "-A"], project, check=False)


def test_package_module_is_a_dependency(project):
    metrics_py = project / "bsegn/metrics.py"
    original = metrics_py.read_text()
    metrics_py.write_text(original + "\n# touched by the test\n")
    try:
        status = sh(DVC + ["status", "--json"], project).stdout
        changed = set(json.loads(status))
        assert changed == per_seed("classify", "figures"), changed  # both import metrics; train does not
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
        # a classify typo stops the first stage, before any training
        params = yaml.safe_load(yaml.safe_dump(TINY))
        params["classify"]["common"]["epocs"] = 3
        write_params(project, params)
        res = sh([sys.executable, "stages/download.py", "--dataset", "TINY"], project, check=False)
        assert res.returncode == 2 and "classify.common.epocs: unknown key" in res.stderr
        # so does a misspelt section (it used to be ignored, the shipped defaults used instead)
        params = yaml.safe_load(yaml.safe_dump(TINY))
        params["trian"] = params.pop("train")
        write_params(project, params)
        res = sh([sys.executable, "stages/download.py", "--dataset", "TINY"], project, check=False)
        assert res.returncode == 2 and "unknown section 'trian' (did you mean 'train'?)" in res.stderr
    finally:
        write_params(project, TINY)


def test_a_diverging_classifier_fails_the_experiment_with_one_line(project):
    """classify.common.lr=1e6 used to end with rc 0 and H 0.8; now the first classify stops with
    one `error:` line naming the key, and the workspace and its outputs are untouched."""
    metrics_before = (project / "runs/TINY/seed0/metrics.json").read_bytes()
    status_before = sh(["git", "status", "--porcelain"], project).stdout
    res = sh(DVC + ["exp", "run", "--temp", "-S", "classify.common.lr=1e6"], project, check=False)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the softmax classifier diverged" in errors[0], res.stderr[-2000:]
    assert "classify.<DATASET>.lr (now 1e+06)" in errors[0]
    assert (project / "runs/TINY/seed0/metrics.json").read_bytes() == metrics_before
    assert sh(["git", "status", "--porcelain"], project).stdout == status_before


def test_killed_stage_leaves_no_output(project, tmp_path):
    """SIGKILL during training: the previous model stays, no partial file appears."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"]["epochs"] = 10_000
    write_params(project, params)
    model = project / "runs/TINY/seed0/model.pt"
    before = model.read_bytes()
    try:
        sh(SETTINGS, project)
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
        sh(SETTINGS, project)


def test_killed_training_resumes_from_its_checkpoint_and_ends_the_same(project):
    """SIGKILL after a checkpoint, restart with the same params: the same model, byte for byte,
    as a run that was never interrupted; the checkpoint is gone once the stage completes."""
    params = yaml.safe_load(yaml.safe_dump(TINY))
    params["train"]["common"].update(epochs=600, checkpoint_every=100)
    write_params(project, params)
    model, log = project / "runs/TINY/seed0/model.pt", project / "runs/TINY/seed0/train_log.csv"
    ckpt = project / ".cache/checkpoints/TINY/seed0/train.pt"
    cmd = [sys.executable, "stages/train.py", "--dataset", "TINY", "--seed", "0"]
    env = {**os.environ, "PYTHONPATH": str(project)}
    try:
        sh(SETTINGS, project)
        sh(cmd, project)
        uninterrupted = model.read_bytes(), log.read_text()
        assert not ckpt.exists()
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert ckpt.exists()
        res = sh(cmd, project)
        assert "resuming after epoch" in res.stderr
        assert (model.read_bytes(), log.read_text()) == uninterrupted
        assert not ckpt.exists()
    finally:
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def _children(pid: int, marker: str) -> list[int]:
    """Live processes whose parent is ``pid`` and whose command line contains ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and marker in (proc / "cmdline").read_text():
                    found.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_python(pid: int) -> bool:
    """The process has exec'd Python (not a shell whose command line names the stage)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name.startswith("python")
    except OSError:
        return False


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_stage_stops_when_its_dvc_dies(project, shell):
    """SIGKILL to `dvc repro` alone: its stage stops too instead of writing its output later.

    The kill comes half a second after the stage started, while it is still importing torch:
    the parent-death request must already be in place then (on a slow machine the imports
    take several seconds, and a request made after them came too late)."""
    params = yaml.safe_load(yaml.safe_dump(TINY))
    params["train"]["common"]["epochs"] = 100_000
    write_params(project, params)
    model = project / "runs/TINY/seed0/model.pt"
    stage: list[int] = []
    launched: list[int] = []  # dvc's children naming the stage: the stage, or a shell around it
    try:
        # DVC runs the command with $SHELL -c, /bin/sh when unset (as on CI): dash, which keeps
        # itself as the stage's parent unless the command says exec.
        env = {**os.environ, "PYTHONPATH": str(project), "SHELL": shell}
        dvc = subprocess.Popen(DVC + ["repro", "train@TINY-0"], cwd=project, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 60
        while not stage and time.time() < deadline:
            launched = _children(dvc.pid, "stages.train")
            stage = [pid for pid in launched if _is_python(pid)]
            time.sleep(0.1)
        assert stage, "the train stage did not start as dvc's own child"
        time.sleep(0.5)
        dvc.send_signal(signal.SIGKILL)
        dvc.wait()
        deadline = time.time() + 20
        while _alive(stage[0]) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(stage[0]), "the stage outlived its dvc"
        time.sleep(1)
        assert not model.exists(), "the orphaned stage wrote its output"  # dvc removed it before the run
        assert not list(model.parent.glob(".*.tmp"))
    finally:
        # If the test failed, leave no 100,000-epoch orphan hogging the CPU and DVC's lock.
        for pid in [child for pid in launched for child in _children(pid, "stages.train")] + launched:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        write_params(project, TINY)
        sh(DVC + ["repro"], project)


def test_queued_experiment_runs_the_code_it_was_queued_with(project):
    """Stages run as `python -m stages.x` import the bsegn of the experiment's own workspace
    copy: a module edited after queueing (here made to fail on import) is not the one run."""
    sh(DVC + ["exp", "run", "--queue", "-S", "classify.common.epochs=3", "-n", "queued-exp"], project)
    report_py = project / "bsegn/report.py"
    original = report_py.read_text()
    report_py.write_text(original + "\nraise RuntimeError('edited after the experiment was queued')\n")
    try:
        sh(DVC + ["queue", "start", "-j", "1"], project)
        deadline = time.time() + 300
        status = ""
        while time.time() < deadline:
            status = sh(DVC + ["queue", "status"], project).stdout
            if "queued-exp" in status and ("Success" in status or "Failed" in status):
                break
            time.sleep(2)
        assert "Success" in status, status + sh(DVC + ["queue", "logs", "queued-exp"], project, check=False).stdout
        assert "queued-exp" in sh(DVC + ["exp", "list", "--name-only"], project).stdout
    finally:
        report_py.write_text(original)
        sh(DVC + ["queue", "stop"], project, check=False)
        sh(DVC + ["exp", "remove", "queued-exp"], project, check=False)


def test_offline_real_benchmark_switch_fails_fast_and_leaves_the_workspace(project):
    """The README's switch (`dvc exp run --temp -S base.datasets=[...]`) with no network: one
    clear line naming the fix, within seconds, params.yaml and the current outputs untouched."""
    params_before = (project / "params.yaml").read_bytes()
    model_before = (project / "runs/TINY/seed0/model.pt").read_bytes()
    status_before = sh(["git", "status", "--porcelain"], project).stdout
    start = time.time()
    res = sh(DVC + ["exp", "run", "--temp", "-S", "base.datasets=[NONET]"], project, check=False)
    assert res.returncode != 0
    assert time.time() - start < 60
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    assert "NONET: http://benchmarks.example.invalid/xlsa17.zip could not be reached after 1 attempt(s)" in errors[0]
    assert "download.sources.NONET.kind: archive" in errors[0]
    assert (project / "params.yaml").read_bytes() == params_before
    assert (project / "runs/TINY/seed0/model.pt").read_bytes() == model_before
    assert sh(["git", "status", "--porcelain"], project).stdout == status_before


def test_replaced_local_archive_reruns_download(project):
    """An archive source kept in data/local/: a fixed copy at the same path reruns download
    (it used to say "didn't change, skipping" and keep the bad result)."""
    from bsegn.synthetic import write_benchmark
    import zipfile

    def archive(seed: int) -> None:
        folder = project / f".cache/zip{seed}"
        write_benchmark(synthetic_cfg(**{**TINY["download"]["sources"]["TINY"]["synthetic"], "seed": seed}), folder)
        with zipfile.ZipFile(project / "data/local/xlsa17.zip", "w") as zf:
            for name in ("res101.mat", "att_splits.mat"):
                zf.write(folder / name, f"xlsa17/data/ZIPPED/{name}")

    params = yaml.safe_load(yaml.safe_dump(TINY))
    params["base"]["datasets"] = ["ZIPPED"]
    params["download"]["sources"]["ZIPPED"] = {"kind": "archive", "path": "data/local/xlsa17.zip"}
    write_params(project, params)
    try:
        archive(1)
        assert "download@ZIPPED" in ran(sh(DVC + ["repro", "download@ZIPPED"], project))
        first = (project / "data/raw/ZIPPED/res101.mat").read_bytes()
        assert ran(sh(DVC + ["repro", "download@ZIPPED"], project)) == set()
        archive(2)  # a different archive copied over the same path
        assert "download@ZIPPED" in json.loads(sh(DVC + ["status", "--json", "download@ZIPPED"], project).stdout)
        assert "download@ZIPPED" in ran(sh(DVC + ["repro", "download@ZIPPED"], project))
        assert (project / "data/raw/ZIPPED/res101.mat").read_bytes() != first
    finally:
        (project / "data/local/xlsa17.zip").unlink(missing_ok=True)
        write_params(project, TINY)


def test_readme_offline_real_benchmark_command_runs_verbatim(project):
    """The README's command for a benchmark archive already on disk, run as written (bash) on an
    xlsa17-shaped zip of a tiny benchmark built here: it used to fail on the missing `+` and
    on the relative path that the `--temp` copy does not have."""
    from bsegn.synthetic import write_benchmark
    import zipfile

    readme = (ROOT / "README.md").read_text()
    block = readme.split("With the archive already on disk", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    command = block.replace("\\\n", " ").strip()
    assert command.startswith("dvc exp run --temp") and "data/local/xlsa17.zip" in command, command
    folder = project / ".cache/cub"
    write_benchmark(synthetic_cfg(**TINY["download"]["sources"]["TINY"]["synthetic"]), folder)
    with zipfile.ZipFile(project / "data/local/xlsa17.zip", "w") as zf:
        for name in ("res101.mat", "att_splits.mat"):
            zf.write(folder / name, f"xlsa17/data/CUB/{name}")
    params = yaml.safe_load(yaml.safe_dump(TINY))
    params["download"]["sources"]["CUB"] = {"kind": "url", "url": "http://benchmarks.example.invalid/xlsa17.zip"}
    params["train"]["CUB"] = {"epochs": 2}  # the project's own block: BSeGN's CUB design trains 168
    params["base"]["seeds"] = [0]
    write_params(project, params)
    sh(["git", "commit", "-qam", "a CUB source as shipped"], project)
    try:
        done = sh(["bash", "-c", "exec " + command.replace("dvc ", f"{sys.executable} -m dvc ", 1)], project)
        shown = json.loads(sh(DVC + ["exp", "show", "--json"], project).stdout)
        metrics = [rev["data"]["metrics"]["reports/metrics.json"]["data"]
                   for top in shown for exp in top.get("experiments") or [] for rev in exp.get("revs") or []]
        assert any("CUB" in m for m in metrics), done.stdout[-2000:]
    finally:
        sh(DVC + ["exp", "remove", "--all-commits", "-A"], project, check=False)
        (project / "data/local/xlsa17.zip").unlink(missing_ok=True)
        write_params(project, TINY)
        sh(["git", "commit", "-qam", "back to TINY"], project, check=False)
