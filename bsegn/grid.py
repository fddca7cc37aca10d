"""Grids as DVC experiments, spread over GPUs and hosts by Ray.

One run of a grid is one ``dvc exp run`` (a method x dataset x seed, plus any ``--set``
overrides), named after what it runs (:func:`Task.name`). The runs are Ray tasks: on one machine
``ray.init()`` starts a local instance; ``--ray-address`` joins a cluster. Each task:

1. looks on the git remote for its experiment (under the grid's baseline commit) and stops there
   if it exists: a task that was killed after its push, and retried, adds nothing;
2. clones the git remote at the baseline commit into a folder of its own (DVC's repository lock
   allows one run per repository), with the node's shared DVC cache, so stages already run on
   that node (download, prepare) come from DVC's run cache;
3. runs ``dvc exp run -n NAME -S base.method=... -S 'base.datasets=[DS]' -S 'base.seeds=[S]'``
   on the GPU share Ray gave it (``CUDA_VISIBLE_DEVICES``; the CUDA MPS daemon is started where
   there is one, so several runs share a card);
4. pushes the experiment to the git remote and its outputs and run cache to the DVC remote
   (``dvc exp push --run-cache``). Only a finished run is pushed, so a task that fails or is
   killed before that leaves nothing, and Ray retries it (``--retries``) from a fresh clone.

``collect`` turns the experiments on the git remote into rows (each run's
``reports/results.csv`` in its experiment's commit, with the experiment's name and commit), which
:mod:`bsegn.research.comparison` writes into ``records/methods.csv``.

    python -m bsegn.grid run --methods f-clswgan bsegn --datasets SYN_CUB SYN_FLO --seeds 3 4 5
        [--set KEY=VALUE ...] [--gpus-per-run 0.125] [--ray-address ADDRESS] [--git-remote origin]
    python -m bsegn.grid collect [--git-remote origin] [--baseline REV] --out runs.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pandas as pd

from . import config, lifeline
from .config import METHODS, parse_set
from .errors import PipelineError


@dataclass(frozen=True)
class Task:
    """One run of the grid: ``method`` on ``dataset`` with ``seed``, plus ``sets`` (``-S``
    overrides as ``KEY=VALUE`` texts, ``{ds}`` already filled in)."""

    method: str
    dataset: str
    seed: int
    sets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The experiment's name: what it runs, and a digest of its overrides when it has any
        (a valid git ref name; the same task always gets the same name)."""
        base = f"{self.method}-{self.dataset}-s{self.seed}"
        if not self.sets:
            return base
        return f"{base}-{hashlib.sha256(json.dumps(sorted(self.sets)).encode()).hexdigest()[:8]}"

    def exp_args(self) -> list[str]:
        """``dvc exp run``'s ``-S`` options; the overrides as ``++KEY=VALUE`` (set, or add where
        the params file has no such key: ``train.SYN_CUB.epochs`` needs no block in params.yaml)."""
        args = ["-S", f"base.method={self.method}", "-S", f"base.datasets=[{self.dataset}]",
                "-S", f"base.seeds=[{self.seed}]"]
        for s in self.sets:
            file, colon, override = s.rpartition(":") if ":" in s.split("=", 1)[0] else ("", "", s)
            args += ["-S", f"{file}{colon}++{override.lstrip('+')}"]
        return args

    def params(self, params: dict) -> dict:
        """``params`` (as :func:`bsegn.config.load_params` gives them) with this run's overrides."""
        sets = {"base.method": self.method, "base.datasets": [self.dataset], "base.seeds": [self.seed]}
        for s in self.sets:
            key, value = parse_set(s)
            file, _, key = key.rpartition(":")
            sets[("methods." if file == "methods.yaml" else "") + key.lstrip("+")] = value
        return config.apply_overrides(params, sets)


def plan(methods: list[str], datasets: list[str], seeds: list[int], sets: list[str]) -> list[Task]:
    """Every method x dataset x seed, in that order; ``sets`` may name ``{ds}``."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise PipelineError(f"--methods: unknown {bad}; expected some of {list(METHODS)}")
    tasks = [Task(m, ds, seed, tuple(s.replace("{ds}", ds) for s in sets))
             for m in methods for ds in datasets for seed in seeds]
    params = config.load_params()
    for t in tasks:  # a bad key or value stops here, named, not in every task after its retries
        config.settings_records(t.params(params), t.dataset)  # what its settings stage will resolve
    return tasks


@dataclass(frozen=True)
class Target:
    """Where the grid's tasks get their code and put their experiments."""

    git_url: str  # the git remote every node clones from and pushes to
    baseline: str  # the commit (40 hex) every task runs
    dvc_remote: str | None  # the DVC remote for outputs and run cache (None: the repo's default)
    workdir: Path  # per node: clones (removed after their run), the shared DVC cache, logs


def _git(args: list[str], cwd: Path | None = None) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout.strip()


def _dvc(args: list[str], cwd: Path, log=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``cwd``; its output goes to ``log`` (a file) when given. The process is
    tied to this one (Linux): if a task's worker is killed, its dvc, and through
    :mod:`bsegn.lifeline` the stage it runs, stop too instead of running on as orphans."""
    out = log if log is not None else subprocess.PIPE
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, **(env or {}), "DVC_NO_ANALYTICS": "1"},
                          preexec_fn=lambda: lifeline.signal_when_parent_dies(signal.SIGKILL))


def preflight(repo: Path, git_remote: str, dvc_remote: str | None, workdir: Path) -> Target:
    """The grid's target, after checking what would otherwise fail in every task: the code is
    committed and on the git remote, and a DVC remote is configured."""
    if _git(["status", "--porcelain", "--untracked-files=no"], repo):
        raise PipelineError("the grid runs committed code, and the work tree has uncommitted changes "
                            "(git status): commit or stash them first")
    url = _git(["remote", "get-url", git_remote], repo)
    baseline = _git(["rev-parse", "HEAD"], repo)
    _git(["fetch", "-q", git_remote], repo)
    if not _git(["branch", "-r", "--contains", baseline], repo):
        raise PipelineError(f"commit {baseline[:7]} is not on the git remote '{git_remote}' ({url}), where the "
                            f"grid's workers clone from: git push {git_remote} first")
    names = _dvc(["remote", "list"], repo).stdout.split()[::2]  # lines of "name url"
    if dvc_remote is not None and dvc_remote not in names:
        raise PipelineError(f"--dvc-remote {dvc_remote}: no such DVC remote (dvc remote list: {names})")
    if dvc_remote is None and _dvc(["remote", "default"], repo).returncode != 0:
        raise PipelineError("no default DVC remote, where the experiments' outputs go: "
                            "dvc remote add -d NAME URL (and commit .dvc/config), or pass --dvc-remote")
    return Target(url, baseline, dvc_remote, workdir)


def remote_experiments(git_url: str, baseline: str) -> dict[str, str]:
    """``{name: commit}`` of the experiments on the git remote whose baseline is ``baseline``
    (DVC keeps them as ``refs/exps/<2 hex>/<38 hex>/<name>``)."""
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
    found = {}
    for line in _git(["ls-remote", git_url, f"{prefix}*"]).splitlines():
        sha, ref = line.split("\t")
        found[ref[len(prefix):]] = sha
    return found


def _start_mps() -> None:
    """Start the CUDA MPS control daemon on this node if it has GPUs and the daemon is not
    running: runs on one card then share it at once instead of taking turns."""
    if not os.environ.get("CUDA_VISIBLE_DEVICES") or shutil.which("nvidia-cuda-mps-control") is None:
        return
    probe = subprocess.run(["nvidia-cuda-mps-control"], input="get_server_list\n", capture_output=True, text=True)
    if probe.returncode != 0:  # not running; a second task starting it too only gets "already running"
        subprocess.run(["nvidia-cuda-mps-control", "-d"], capture_output=True)


def run_task(task: Task, target: Target) -> dict:
    """One grid run, as a Ray task executes it (see the module's docstring); returns
    ``{name, status: ran | exists, seconds, commit}``."""
    t0 = time.time()
    done = remote_experiments(target.git_url, target.baseline)
    if task.name in done:
        return {"name": task.name, "status": "exists", "seconds": 0.0, "commit": done[task.name]}
    _start_mps()
    (target.workdir / "logs").mkdir(parents=True, exist_ok=True)
    clone = target.workdir / "clones" / f"{task.name}-{uuid.uuid4().hex[:8]}"
    log_path = target.workdir / "logs" / f"{task.name}.log"
    try:
        _git(["clone", "-q", "--no-checkout", target.git_url, str(clone)])
        _git(["checkout", "-q", target.baseline], clone)
        # the stages import the clone's bsegn (the baseline's code) and run on this Python
        env = {"PYTHONPATH": str(clone), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        with log_path.open("a") as log:
            log.write(f"--- {task.name} in {clone} (pid {os.getpid()}, CUDA_VISIBLE_DEVICES="
                      f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')})\n")
            log.flush()
            steps = [["cache", "dir", "--local", str(target.workdir / "cache")],
                     ["exp", "run", "-n", task.name, *task.exp_args()],
                     ["exp", "push", "--run-cache", *(["-r", target.dvc_remote] if target.dvc_remote else []),
                      "origin", task.name]]
            for step in steps:
                res = _dvc(step, clone, log, env)
                if res.returncode != 0:
                    raise PipelineError(f"{task.name}: dvc {' '.join(step[:2])} failed with exit status "
                                        f"{res.returncode} (log: {log_path})")
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    commit = remote_experiments(target.git_url, target.baseline).get(task.name, "")
    return {"name": task.name, "status": "ran", "seconds": round(time.time() - t0, 1), "commit": commit}


def dispatch(tasks: list[Task], target: Target, ray_address: str | None, gpus_per_run: float,
             cpus_per_run: float, retries: int, say=print) -> list[dict]:
    """Run ``tasks`` as Ray tasks (a local instance, or the cluster at ``ray_address``); a task
    that raises or whose worker dies is retried up to ``retries`` times. Returns one result
    per task (``status: failed`` with the error for a task that ran out of retries)."""
    import ray  # here, not at the top: only the grid needs it, and it takes a second to import

    ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
             **({} if ray_address else {"num_cpus": os.cpu_count()}))
    try:
        remote = ray.remote(run_task).options(num_gpus=gpus_per_run, num_cpus=cpus_per_run,
                                              max_retries=retries, retry_exceptions=True)
        pending = {remote.remote(t, target): t for t in tasks}
        results = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as e:  # out of retries: report it, keep the others going
                r = {"name": task.name, "status": "failed", "error": str(e).splitlines()[-1][:300]}
            results.append(r)
            say(f"{len(results)}/{len(tasks)} {r['name']}: {r['status']}"
                + (f" in {r['seconds']:.0f} s" if r["status"] == "ran" else "")
                + (f" ({r['error']})" if r["status"] == "failed" else ""))
        return results
    finally:
        ray.shutdown()


def collect(repo: Path, git_remote: str, baseline: str | None = None) -> pd.DataFrame:
    """The grid's runs from the experiments on the git remote: each experiment's
    ``reports/results.csv`` rows (as ``bsegn.research.ablation run`` writes them: ``variant`` is the
    method) with ``experiment`` (its name) and ``commit``. ``baseline``: only experiments of
    that commit; without it, all, and a run found under two baselines is an error."""
    url = _git(["remote", "get-url", git_remote], repo)
    refs = _git(["ls-remote", url, "refs/exps/*"], repo).splitlines()
    if baseline is not None:
        base = _git(["rev-parse", baseline], repo)
        refs = [r for r in refs if f"refs/exps/{base[:2]}/{base[2:]}/" in r]
    if refs:  # as `dvc exp pull` does for git: then `dvc exp show` lists them here too
        _git(["fetch", "-q", url, *(f"{ref}:{ref}" for ref in (r.split("\t")[1] for r in refs))], repo)
    rows = []
    for line in refs:
        sha, ref = line.split("\t")
        parts = ref.split("/")  # refs, exps, 2 hex, 38 hex, name
        results = pd.read_csv(StringIO(_git(["show", f"{sha}:reports/results.csv"], repo)))
        for r in results.to_dict("records"):
            ds = r["dataset"]
            settings = json.loads(_git(["show", f"{sha}:runs/{ds}/settings/train.json"], repo))
            rows.append({"variant": settings["base"]["method"], "split": "test", **r, "experiment": parts[-1],
                         "commit": sha, "baseline": parts[2] + parts[3]})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    twice = df[df.duplicated(["variant", "dataset", "seed", "experiment"], keep=False)]
    if len(twice):
        raise PipelineError(f"runs found under several baselines: {sorted(set(twice['experiment']))}; "
                            "pass --baseline REV to choose one")
    return df.sort_values(["dataset", "variant", "seed"], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a grid as DVC experiments")
    run.add_argument("--methods", nargs="+", default=list(METHODS))
    run.add_argument("--datasets", nargs="+", required=True)
    run.add_argument("--seeds", nargs="+", type=int, required=True)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="one more -S override for every run ({ds}: the run's dataset)")
    run.add_argument("--ray-address", help="a Ray cluster to join (default: a local instance on this machine)")
    run.add_argument("--gpus-per-run", type=float, default=0.0,
                     help="GPU share per run: 0.125 puts 8 on a card (default 0: CPU runs)")
    run.add_argument("--cpus-per-run", type=float, default=1.0)
    run.add_argument("--retries", type=int, default=2, help="reruns of a failed or killed task")
    run.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bsegn-grid"),
                     help="per node: the runs' clones, the shared DVC cache and logs")
    run.add_argument("--dry", action="store_true", help="print the experiments and stop")
    for p in (run, sub.add_parser("collect", help="rows of the grid's experiments on the git remote")):
        p.add_argument("--git-remote", default="origin")
    run.add_argument("--dvc-remote", help="DVC remote for the outputs (default: the repository's default)")
    col = sub.choices["collect"]
    col.add_argument("--baseline", help="only experiments of this commit")
    col.add_argument("--out", required=True, help="CSV of the runs (bsegn.research.comparison reads it)")
    args = parser.parse_args(argv)
    repo = Path.cwd()
    try:
        if args.command == "run":
            tasks = plan(args.methods, args.datasets, args.seeds, args.set)
            if args.dry:
                print("\n".join(f"{t.name}: dvc exp run {' '.join(t.exp_args())}" for t in tasks))
                return
            target = preflight(repo, args.git_remote, args.dvc_remote, Path(args.workdir))
            print(f"{len(tasks)} experiments of {target.baseline[:7]}, pushed to {target.git_url}", flush=True)
            t0 = time.time()
            results = dispatch(tasks, target, args.ray_address, args.gpus_per_run, args.cpus_per_run, args.retries,
                               say=lambda s: print(s, flush=True))
            failed = [r["name"] for r in results if r["status"] == "failed"]
            ran = sorted(r["seconds"] for r in results if r["status"] == "ran")
            if ran:  # what a grid costs: the figures the README's cost line is made of
                wall = time.time() - t0
                print(f"ran {len(ran)} in {wall:.0f} s wall: {3600 * len(ran) / wall:.1f} runs per hour, "
                      f"a run's own time {ran[0]:.0f}-{ran[-1]:.0f} s (median {ran[len(ran) // 2]:.0f} s)")
            print(f"done: {len(results) - len(failed)} of {len(results)}; `dvc exp pull {args.git_remote} -A` "
                  "brings them here, `dvc exp show` lists them")
            if failed:
                raise PipelineError(f"{len(failed)} run(s) failed after their retries: {failed} "
                                    f"(logs in {args.workdir}/logs)")
        else:
            df = collect(repo, args.git_remote, args.baseline)
            if df.empty:
                raise PipelineError(f"no experiments on the git remote '{args.git_remote}'")
            from .io import save_text
            save_text(df.to_csv(index=False, float_format="%.4f"), args.out)
            print(f"wrote {len(df)} run(s) of {df['experiment'].nunique()} experiment(s) to {args.out}")
    except (PipelineError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
