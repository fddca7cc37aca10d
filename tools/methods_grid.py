#!/usr/bin/env python3
"""The GPU runs behind records/methods_runs.csv and records/fidelity_runs.csv (issue #22).

A research tool, not a stage (issue #24 brings grids as DVC experiments). It runs the pipeline's
own functions in the order ``bsegn.research.ablation run`` does, with two differences that let the grid
use a lent GPU's half hour:

* each run's two trainings are two jobs: ``val`` (train_val on the validation split, then the
  classifier epochs and calibration constant chosen there) and ``test`` (train on the test
  split, generate, then classify with those choices, which it waits for). Each step re-seeds as
  the stages do, so the pair gives the numbers ``ablation run`` gives (checked on SYN, all
  columns equal), and the longest runs' critical path halves;
* every job is a process of its own, so a worker that dies (a segfault, the OOM killer) loses its
  own job, logged with its exit status in ``OUT/logs/``, not the whole pool: a first attempt on
  one H200 with a 28-worker process pool lost all 122 jobs when one worker died at 576 s;
* a job that fails for want of memory (PyTorch's out-of-memory error) goes back to the end of
  the queue, up to ``MAX_TRIES`` attempts: CE-GZSL's comparator scores every embedding of a
  2048 batch against every seen class, so on SYN_SUN's 645 classes one half holds tensors of
  several GB per layer, and six such halves at once do not fit one card. So does one that could
  not load torch's libraries as it started (``Intel oneMKL FATAL ERROR: Cannot load
  .../libtorch_cpu.so``: on lent H200 machines, every job started in a window of a minute or two
  some ten minutes into a lease, twice on 2026-12-04; nothing was computed, so another try costs
  seconds). A retried job waits ``RETRY_WAIT_S`` per failed try before it starts again, so the
  tries outlast such a window instead of failing within it.

Jobs start longest first (generator iterations x a per-method factor), seed 3 before 4-5; the
fidelity runs (one per public evaluation epoch E: ``train.<DS>.epochs=E``, classifier epochs
fixed, no calibration; :mod:`bsegn.research.fidelity`) go in at ``--fidelity-at``. ``OUT/rows.csv`` is
rewritten after every finished test job (an ``ablation run`` CSV plus ``train_epochs``,
``group``, ``seconds``), so a lease that runs out leaves what was measured. A job the trainer
stopped on a diverged loss (``TrainingDiverged``) is final and goes to ``OUT/diverged.csv``
(``variant, dataset, seed, part, group, epoch, loss, value``), which ``bsegn.research.comparison
--diverged`` counts in the tables.

``--plan screen`` queues design variants (``--variants``, from ``--variants-file``) on the
validation split alone, one job per variant x dataset x ``--screen-seeds``, each the row
``bsegn.research.ablation run --split val`` gives, into ``OUT/screen.csv``: so one lease's queue
can hold a method grid's runs and a design round's screen, each job in a process of its own.

    python tools/methods_grid.py OUT --workers 4 [--plan grid fidelity spot screen] [--methods ...]
        [--seeds 3 4 5] [--datasets SYN_CUB ...] [--skip OLD_rows.csv ...] [--order short] [--dry]
        [--variants-file records/screens/R_variants.yaml --variants V ... --screen-seeds 0 1]
        [--deadline SECONDS_LEFT_IN_THE_LEASE [--rate COST_UNITS_PER_S]]

With ``--deadline`` a job starts only if, costed as sharing the card with ``--workers - 1``
others, it would end before the lease does; the others are dropped (``SKIP`` in ``done.log``)
with their other half, so the last minutes go to jobs that can finish.

Measured on one H200 with MPS (2026-12-02): tf-vaegan SYN_CUB trains at 1.51 epochs/s alone, and
at 2.28, 2.52 and 2.55 epochs/s in total with 4, 8 and 16 processes at once (the GPU at 100 % and
630-640 W from 4 on): the card is saturated by about 8 runs, so more workers only make each run
slower. With 8 at a time (``--order short``), f-CLSWGAN's halves took 71-157 s (CUB, SUN, FLO,
AWA2's val) and its AWA2 test halves 540-890 s, CE-GZSL's AWA2 and CUB halves 100-490 s. On
2026-12-03, 2 and 5 jobs at once gave the same total (about 650 cost units/s) as 8, each job
finishing sooner: on a lent card that can be taken back, start few
(docs/log/2026-12-02-methods-grid-cost.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's bsegn
import pandas as pd  # noqa: E402

from bsegn import config, data, download, evaluate, pipeline, trainer  # noqa: E402
from bsegn.io import save_text  # noqa: E402
from bsegn.model import run_generate  # noqa: E402
from bsegn.research import ablation  # noqa: E402

DATASETS = ["SYN_CUB", "SYN_SUN", "SYN_AWA2", "SYN_FLO"]
GRID_METHODS = ["f-clswgan", "f-vaegan", "tf-vaegan", "ce-gzsl"]  # bsegn: records/realistic.csv's claim runs
# per-iteration cost relative to f-CLSWGAN's at batch 64: for the start order and --deadline
FACTOR = {"f-clswgan": 1.0, "f-vaegan": 1.5, "tf-vaegan": 2.5, "ce-gzsl": 8.0, "bsegn": 2.0}
# a design variant's factor is bsegn's times these where it switches them on: CE-GZSL's embedding
# beside bsegn took 1.5x bsegn's time (SYN_CUB 317 s against 206, SYN_AWA2 147 against 97, one
# H100, 2026-12-08). With its unseen fakes, not yet measured on a GPU: on this 2-core CPU, one
# iteration at SYN_CUB's validation shapes took 2.47 s (bsegn), 3.23 (+ embedding), 6.28 (+ its
# unseen fakes, 1.95x the embedding's), 6.41 (+ s2f and balance)
DESIGN_FACTOR = {"embed": 1.5, "embed_unseen": 2.0}
FIXED = {"classify.{ds}.select_epochs": "fixed", "classify.{ds}.calibration": False}
# (method, dataset): our epochs (passes) at which its public code was evaluated: TF-VAEGAN's epoch
# is two passes (bsegn.research.fidelity.PASSES_PER_EPOCH), so its epochs 5..60 are our 10..120
FIDELITY = {
    ("tf-vaegan", "SYN_CUB"): [10, 20, 30, 40, 60, 80, 100, 120],
    ("tf-vaegan", "SYN_AWA2"): [10, 20, 30, 40, 50, 60],
    ("ce-gzsl", "SYN_AWA2"): [10, 20, 25, 30, 40],
    ("ce-gzsl", "SYN_CUB"): [20, 40, 50, 60, 80, 100, 150],
}
SPOT = ["SYN_AWA2", "SYN_FLO"]  # bsegn seed 3 rerun against records/realistic.csv's rows


def _rss_mb() -> float:
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_job(job: dict) -> dict:
    """One half (``val`` or ``test``) of a run, or a ``screen`` job; the ``test`` half returns its
    run's row, a ``screen`` job its validation row."""
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    if job.get("variants_file"):  # a fresh process: the file's variants are not in VARIANTS yet
        ablation.load_variants(job["variants_file"])
    params = config.load_params()
    sets = ablation.overrides(job["variant"], job["ds"], job["extra"], params)
    run = pipeline.run_config(config.apply_overrides(params, sets), job["ds"])
    seed, label = job["seed"], job["id"]
    sel_path = Path(job["sel"]) if job.get("sel") else None
    if job["part"] == "screen":  # the row `ablation run --split val` writes
        validation = trainer.run_train_val(data.load_prepared(job["prep"], split="val"), run, seed, label=label)
        row = ablation.screening_row(job["variant"], job["ds"], seed, evaluate.select(validation, run, seed))
        return {**row, "group": job["group"], "seconds": round(time.time() - t0, 1), "rss_mb": _rss_mb()}
    if job["part"] == "val":
        validation = trainer.run_train_val(data.load_prepared(job["prep"], split="val"), run, seed, label=label)
        selection = evaluate.select(validation, run, seed)
        selection.pop("curve")
        save_text(json.dumps(selection), sel_path)  # whole or absent: its test half polls for it
        return {"seconds": round(time.time() - t0, 1), "rss_mb": _rss_mb()}
    bench = data.load_prepared(job["prep"])
    model, _ = trainer.run_train(bench, run, seed, label=label)
    x, y = run_generate(bench, model, run, seed)
    selection = None
    if evaluate.validation_needed(run.classify):
        failed = sel_path.with_suffix(".failed")
        while not sel_path.exists():
            if failed.exists():
                raise RuntimeError(f"{job['id']}: its validation half failed (see its log)")
            time.sleep(2)
        selection = json.loads(sel_path.read_text())
    metrics, _, _ = evaluate.classify_with(bench, model, x, y, run, seed, selection)
    row = ablation.experiment_row(job["variant"], job["ds"], seed, metrics, selection)
    return {**row, "train_epochs": run.train.epochs, "group": job["group"], "seconds": round(time.time() - t0, 1),
            "rss_mb": _rss_mb()}


MAX_TRIES = 4  # attempts of a job that failed for a passing reason; other failures are final at once
# seconds a retried job waits per failed try: on 2026-12-04 every process started 616-710 s into a
# lease failed to load torch (17 jobs, 3 tries each, within 94 s) while those already running went on
RETRY_WAIT_S = 90
# PyTorch's messages when an allocation fails (GPU: torch.OutOfMemoryError; CPU), and MKL's when
# it cannot load torch's libraries at start-up
_PASSING = ("CUDA out of memory", "torch.OutOfMemoryError", "DefaultCPUAllocator: can't allocate memory",
            "Intel oneMKL FATAL ERROR: Cannot load")


def _tail(log: Path) -> str:
    """The end of a job's output, where its error is ("" if it wrote none)."""
    return log.read_text(errors="replace")[-20000:] if log.exists() else ""


def worth_another_try(log: Path) -> bool:
    """Whether the job whose output is ``log`` died of something another try can pass: a failed
    allocation (with fewer jobs beside it) or a library that did not load. (A process the kernel's
    OOM killer ends leaves no message and is not retried: the scheduler cannot tell it from other
    kills.)"""
    tail = _tail(log)
    return any(m in tail for m in _PASSING)


# bsegn.trainer.check_finite's message (TrainingDiverged)
_DIVERGED = re.compile(r"training diverged at epoch (\d+): loss '([^']+)' is ([^;\s]+);")


def divergence(log: Path) -> dict | None:
    """Where the job whose output is ``log`` diverged (``epoch``, ``loss``, ``value``), if the
    trainer stopped it for that (``TrainingDiverged``); None for any other end."""
    found = _DIVERGED.findall(_tail(log))
    if not found:
        return None
    epoch, loss, value = found[-1]
    return {"epoch": int(epoch), "loss": loss, "value": float(value)}


def record_divergence(out: Path, job: dict, where: dict) -> None:
    """Add a diverged job to ``OUT/diverged.csv`` (``comparison --diverged`` counts it in the tables)."""
    path = out / "diverged.csv"
    old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    row = {"variant": job["variant"], "dataset": job["ds"], "seed": job["seed"], "part": job["part"],
           "group": job["group"], **where}
    save_text(pd.concat([old, pd.DataFrame([row])], ignore_index=True).to_csv(index=False), path)


def next_startable(queue: list[dict], not_before: dict[str, float], now: float) -> dict | None:
    """Take from ``queue`` the first job whose retry wait (``not_before``, by job id) is over."""
    for i, j in enumerate(queue):
        if not_before.get(j["id"], 0.0) <= now:
            return queue.pop(i)
    return None


def too_late(queue: list[dict], left_s: float, workers: int, rate: float) -> list[dict]:
    """Take from ``queue`` the jobs that would not end within ``left_s`` seconds, each costed as
    if it shared the card with ``workers - 1`` others (cost x workers / ``rate``, the card's total
    cost units per second), and the other half of any such pair: a lease's last minutes go to
    jobs that can finish instead of to jobs it will kill (on 2026-12-08 three SYN_CUB screen
    jobs did not finish beside grid halves that never could)."""
    def run_of(j: dict) -> str:  # a pair's halves share their selection file
        return j.get("sel") or j["id"]

    late = {run_of(j) for j in queue if j["cost"] * workers / rate > left_s}
    dropped = [j for j in queue if run_of(j) in late]
    queue[:] = [j for j in queue if run_of(j) not in late]
    return dropped


def plan(args: argparse.Namespace, out: Path) -> list[dict]:
    params = config.load_params()
    extra_all = dict(config.parse_set(t) for t in args.set)
    dcfg, pcfg = config.download_config(params), config.prepare_config(params)
    n_train = {}
    for ds in args.datasets:
        prep = out / f"{ds}.npz"
        if not prep.exists():
            raw = out / "raw" / ds  # xlsa17 layout: the public codes' --dataroot is OUT/raw
            download.fetch_dataset(ds, dcfg.sources[ds], raw, Path(dcfg.cache_dir), dcfg.timeout_s, dcfg.retries)
            data.save_prepared(prep, data.prepare(raw, pcfg))
        n_train[ds] = len(data.load_prepared(prep).train_y)

    def cost(variant: str, ds: str, extra: dict) -> float:
        run = pipeline.run_config(config.apply_overrides(params, ablation.overrides(variant, ds, extra, params)), ds)
        factor = FACTOR.get(variant) or FACTOR["bsegn"] * math.prod(
            f for key, f in DESIGN_FACTOR.items() if getattr(run.train, key))
        return run.train.epochs * math.ceil(n_train[ds] / run.train.batch_size) * factor

    def pair(group: str, variant: str, ds: str, seed: int, c: float) -> list[dict]:
        key = f"{group}_{variant}_{ds}_{seed}"
        return [{"id": f"{key}_{part}", "group": group, "variant": variant, "ds": ds, "seed": seed, "part": part,
                 "extra": extra_all, "prep": str(out / f"{ds}.npz"), "sel": str(out / "sel" / f"{key}.json"),
                 "cost": c} for part in ("val", "test")]

    jobs: list[dict] = []
    if "grid" in args.plan:
        runs = [(cost(m, ds, extra_all), m, ds, s) for s in args.seeds for m in args.methods for ds in args.datasets]
        first = sorted([r for r in runs if r[3] == args.seeds[0]], reverse=True)
        rest = sorted([r for r in runs if r[3] != args.seeds[0]], reverse=True)
        for c, m, ds, s in first + rest:
            jobs += pair("grid", m, ds, s, c)
    if "fidelity" in args.plan:
        fid = []
        for (m, ds), epochs in FIDELITY.items():
            for e in epochs if ds in args.datasets and m in args.methods else []:
                extra = {**FIXED, "train.{ds}.epochs": e, **extra_all}
                fid.append({"id": f"fidelity_e{e}_{m}_{ds}_{args.seeds[0]}", "group": f"fidelity_e{e}", "variant": m,
                            "ds": ds, "seed": args.seeds[0], "part": "test", "extra": extra,
                            "prep": str(out / f"{ds}.npz"), "cost": cost(m, ds, extra)})
        k = min(len(jobs), args.fidelity_at)
        jobs[k:k] = sorted(fid, key=lambda j: -j["cost"])
    if "screen" in args.plan:  # design variants on the validation split alone (issue #23's rounds)
        screen = []
        for v in args.variants:
            for ds in args.datasets:
                for s in args.screen_seeds:
                    screen.append({"id": f"screen_{v}_{ds}_{s}", "group": "screen", "variant": v, "ds": ds, "seed": s,
                                 "part": "screen", "extra": extra_all, "prep": str(out / f"{ds}.npz"),
                                 "variants_file": args.variants_file, "cost": cost(v, ds, extra_all)})
        jobs += sorted(screen, key=lambda j: -j["cost"])  # longest first (--order short re-sorts all below)
    if "spot" in args.plan:
        for ds in [d for d in SPOT if d in args.datasets]:
            jobs += pair("spot", "bsegn", ds, 3, cost("bsegn", ds, extra_all))
    if args.order == "short":  # cheapest runs first: the most rows within a lease; a run's halves stay together
        jobs.sort(key=lambda j: j["cost"])
    done = set()
    for path in args.skip:
        for r in pd.read_csv(path).to_dict("records"):  # a screen CSV of `ablation run --split val` has no group
            done.add((r.get("group", "screen" if r.get("split") == "val" else "grid"), r["variant"], r["dataset"],
                      int(r["seed"])))
    return [j for j in jobs if (j["group"], j["variant"], j["ds"], j["seed"]) not in done]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=4, help="jobs at a time (2-5 keep one H200 busy)")
    ap.add_argument("--plan", nargs="+", default=["grid", "fidelity", "spot"],
                    choices=["grid", "fidelity", "spot", "screen"])
    ap.add_argument("--variants-file", help="YAML of design variants (ablation run's --variants-file), for --plan screen")
    ap.add_argument("--variants", nargs="+", default=[], help="the variants --plan screen runs")
    ap.add_argument("--screen-seeds", nargs="+", type=int, default=[0, 1], help="the seeds of --plan screen")
    ap.add_argument("--methods", nargs="+", default=GRID_METHODS, choices=list(config.METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[3, 4, 5])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="one more override for every job, as ablation run --set (a CPU smoke test: epochs=1)")
    ap.add_argument("--skip", nargs="*", default=[], help="rows.csv of earlier sessions: their runs are not rerun")
    ap.add_argument("--order", choices=["long", "short"], default="long",
                    help="long: longest runs first (the critical path); short: cheapest first (most rows per lease)")
    ap.add_argument("--fidelity-at", type=int, default=20, help="queue position of the fidelity jobs")
    ap.add_argument("--dry", action="store_true", help="print the jobs in start order and stop")
    ap.add_argument("--deadline", type=float, help="seconds from now the lease ends: a job is started only "
                    "if it would end before, at --rate")
    ap.add_argument("--rate", type=float, default=650.0, help="cost units per second the card gives all jobs "
                    "together (650: one H200 with MPS, 2-8 jobs, 2026-12-03)")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job (JSON file), write its result
    args = ap.parse_args()
    if args.job:
        job = json.loads(Path(args.job).read_text())
        result = run_job(job)  # a failure is the scheduler's to judge: retried, or final (main)
        Path(args.job).with_suffix(".result.json").write_text(json.dumps(result))
        return

    if args.variants_file:
        ablation.load_variants(args.variants_file)
    unknown = [v for v in args.variants if v not in ablation.VARIANTS]
    if unknown or ("screen" in args.plan and not args.variants):
        ap.error(f"--plan screen needs --variants from {list(ablation.VARIANTS)}; unknown: {unknown}")
    out = Path(args.out)
    for sub in ("sel", "jobs", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = plan(args, out)
    for j in jobs:
        print(f"{j['id']:50s} cost {j['cost']:9.0f}", flush=True)
    print(f"{len(jobs)} jobs", flush=True)
    if args.dry:
        return
    t0, queue, running, tries, not_before = time.time(), list(jobs), {}, {}, {}
    made: dict[str, list[dict]] = {"test": [], "screen": []}
    log = (out / "done.log").open("a")
    while queue or running:
        if args.deadline is not None:
            for j in too_late(queue, args.deadline - (time.time() - t0), args.workers, args.rate):
                if j["part"] == "val":  # a test half already waiting for it ends too
                    Path(j["sel"]).with_suffix(".failed").write_text("not started: the lease ends first")
                log.write(f"{time.time() - t0:7.0f} SKIP {j['id']}: would end after the deadline\n")
            log.flush()
        while len(running) < args.workers and (j := next_startable(queue, not_before, time.time())):
            spec = out / "jobs" / f"{j['id']}.json"
            spec.write_text(json.dumps(j))
            with (out / "logs" / f"{j['id']}.log").open("w") as fh:
                running[j["id"]] = (j, subprocess.Popen([sys.executable, __file__, str(out), "--job", str(spec)],
                                                        stdout=fh, stderr=subprocess.STDOUT))
        time.sleep(2)
        for jid, (j, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[jid]
            result = out / "jobs" / f"{jid}.result.json"
            if proc.returncode != 0 or not result.exists():
                tries[jid] = tries.get(jid, 0) + 1
                logged = out / "logs" / f"{jid}.log"
                if worth_another_try(logged) and tries[jid] < MAX_TRIES:
                    kept = logged.rename(logged.with_suffix(f".try{tries[jid]}.log"))
                    queue.append(j)  # at the end: by then fewer of its kind share the card
                    wait = RETRY_WAIT_S * tries[jid]
                    not_before[jid] = time.time() + wait
                    log.write(f"{time.time() - t0:7.0f} RETRY {jid}: out of memory or a library that did not load "
                              f"(logs/{kept.name}), try {tries[jid] + 1} in {wait} s or later\n")
                else:
                    if j["part"] == "val":  # final: its test half stops waiting and fails too
                        Path(j["sel"]).with_suffix(".failed").write_text("failed")
                    if (where := divergence(logged)) is not None:
                        record_divergence(out, j, where)
                    log.write(f"{time.time() - t0:7.0f} FAIL {jid}: exit status {proc.returncode} (logs/{jid}.log)\n")
                log.flush()
                continue
            r = json.loads(result.read_text())
            log.write(f"{time.time() - t0:7.0f} ok {jid} {r['seconds']:.0f}s rss {r['rss_mb']} MB H {r.get('H', '')}\n")
            log.flush()
            if j["part"] in made:  # rows.csv: the runs (test halves); screen.csv: the screen rows
                made[j["part"]].append(r)
                name = "rows" if j["part"] == "test" else "screen"
                save_text(pd.DataFrame(made[j["part"]]).to_csv(index=False, float_format="%.4f"), out / f"{name}.csv")


if __name__ == "__main__":
    main()
