"""Speed harness: ``python -m bsegn.research.bench`` times training, generation and classification.

Random features of each benchmark's shape (no download needed) and the shipped
``params.yaml`` settings of that dataset. For every shape it measures

* seconds per epoch of the full BSeGN in the fast trainer and in ``reference`` (the
  straightforward loop it replaced, :func:`bsegn.research.reference.reference_train`), in the same run,
  and their ratio; the f-CLSWGAN baseline in the fast trainer; ``--seeds`` runs trained side
  by side (:func:`bsegn.trainer.train_many`) against one;
* generation and the classify stage's work (:func:`bsegn.evaluate.evaluate`);
* FLOP per iteration (counted by ``torch.utils.flop_counter``), the achieved FLOP/s, and the
  device's own measured matrix-multiply rate; peak host and GPU memory.

``--pipeline`` also times what ``dvc repro`` computes for one dataset (train, train_val,
generate, classify at the published epoch counts), once per seed as the stages do, and
with the seeds trained side by side. ``--quick`` (SYN only, few epochs) finishes in under a
minute on a 2-core CPU and runs in the test suite. Results: a table on stdout, and the JSON
only where ``--out`` names a file: ``records/bench.json`` is the committed H200 record, and a
run on another machine must not replace it by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .. import pipeline, trainer
from . import reference
from ..config import base_config, dataset_source, load_params, prepare_config, stage_config
from ..data import Benchmark, prepare
from ..evaluate import evaluate, run_classify, validation_needed
from ..io import save_json
from ..model import generate, run_generate
from ..runtime import resolve_device, seed_everything
from ..synthetic import write_benchmark


@dataclass(frozen=True)
class Shape:
    """Sizes of one benchmark's proposed split (xlsa17 counts; SYN as bsegn.synthetic makes it)."""

    n_train: int
    n_test_seen: int
    n_test_unseen: int
    d_feat: int
    d_att: int
    n_seen: int
    n_unseen: int


SHAPES = {
    "SYN": Shape(1536, 384, 600, 128, 24, 32, 10),
    "CUB": Shape(7057, 1764, 2967, 2048, 312, 150, 50),
    "SUN": Shape(10320, 2580, 1440, 2048, 102, 645, 72),
    "AWA2": Shape(23527, 5882, 7913, 2048, 85, 40, 10),
    "FLO": Shape(5631, 1403, 1155, 2048, 1024, 82, 20),
}


def random_benchmark(shape: Shape, seed: int = 0) -> Benchmark:
    """Non-negative features around random class means, random attributes; only sizes matter."""
    rng = np.random.default_rng(seed)
    n_cls = shape.n_seen + shape.n_unseen
    means = rng.gamma(1.0, 1.0, (n_cls, shape.d_feat)).astype(np.float32)
    seen, unseen = np.arange(shape.n_seen), np.arange(shape.n_seen, n_cls)

    def draw(classes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = classes[np.arange(n) % len(classes)]
        x = np.maximum(means[y] + rng.normal(0, 0.5, (n, shape.d_feat)).astype(np.float32), 0)
        return x / x.max(), y.astype(np.int64)

    train_x, train_y = draw(seen, shape.n_train)
    ts_x, ts_y = draw(seen, shape.n_test_seen)
    tu_x, tu_y = draw(unseen, shape.n_test_unseen)
    att = rng.random((n_cls, shape.d_att)).astype(np.float32)
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    return Benchmark(att, seen, unseen, train_x, train_y, ts_x, ts_y, tu_x, tu_y)


def validation_shape(shape: Shape) -> Shape:
    """The class-level validation split: as many seen classes held out as there are unseen."""
    n_val = min(shape.n_unseen, shape.n_seen // 2)
    keep = (shape.n_seen - n_val) / shape.n_seen
    return dataclasses.replace(shape, n_train=int(shape.n_train * keep), n_test_unseen=int(shape.n_train * (1 - keep)),
                               n_seen=shape.n_seen - n_val, n_unseen=n_val)


# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochClock:
    """``on_epoch`` hook: the wall time of every epoch (training syncs once per epoch)."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []
        self.last = time.perf_counter()

    def __call__(self, epoch: int, row: dict) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

    def per_epoch(self) -> float:
        """Median epoch time, leaving out epoch 1 (warm-up, graph capture) when there are more."""
        return statistics.median(self.times[1:] or self.times)


def _gpu_peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _gpu_peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1) if device.type == "cuda" else None


def matmul_rate(device: torch.device) -> float:
    """The device's measured float32 matrix-multiply rate in FLOP/s (TF32 if enabled)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 20 if device.type == "cuda" else 5
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


class FlopCount(TorchDispatchMode):
    """Counts the FLOP of every operator torch's flop counter knows (matrix products, mainly).

    torch's own ``FlopCounterMode`` also tracks modules with autograd hooks, which breaks
    on the gradient penalty's ``autograd.grad``; the per-operator formulas are the same.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def flop_per_iteration(bench: Benchmark, cfg, device: torch.device) -> int:
    """FLOP of one training iteration, counted on an eager run."""
    seed_everything(0)
    state = trainer.setup(bench, dataclasses.replace(cfg, cls_pretrain_epochs=1), device)
    with FlopCount() as counter:
        trainer.iteration(state)
    return counter.total


def time_training(fn, device: torch.device) -> dict:
    """Run ``fn(on_epoch)``; seconds per epoch, set-up seconds (networks, seen-classifier
    pretraining, graph warm-up in epoch 1 beyond a steady epoch) and peak GPU memory."""
    _sync(device)
    _gpu_peak_reset(device)
    start = time.perf_counter()
    clock = EpochClock(device)
    clock.last = start
    fn(clock)
    total = time.perf_counter() - start
    per_epoch = clock.per_epoch()
    return {"s_per_epoch": round(per_epoch, 4), "epochs": len(clock.times), "total_s": round(total, 3),
            "setup_s": round(total - per_epoch * len(clock.times), 3), "gpu_peak_mib": _gpu_peak_mib(device)}


def timed(fn, device: torch.device) -> tuple[object, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def bench_shape(name: str, params: dict, device: torch.device, epochs: int, ref_epochs: int,
                seeds: int, rate: float) -> dict:
    shape = SHAPES[name]
    bench = random_benchmark(shape)
    full = dataclasses.replace(stage_config(params, "train", name),
                               epochs=epochs)
    baseline = dataclasses.replace(full, fem=False, cycle=False)
    gen_cfg = stage_config(params, "generate", name)  # a dataset without a block gets `common`
    cls_cfg = stage_config(params, "classify", name)
    iters = -(-shape.n_train // full.batch_size)
    flop = flop_per_iteration(bench, full, device)
    out: dict = {"shape": dataclasses.asdict(shape), "iters_per_epoch": iters, "flop_per_iter": flop,
                 "hidden": full.hidden, "batch_size": full.batch_size}

    def run_fast(cfg, n_seeds: int = 1):
        def fn(clock):
            if n_seeds == 1:
                seed_everything(0)
                return trainer.train(bench, cfg, device, label=f"bench {name}", on_epoch=clock)
            return trainer.train_many(bench, cfg, device, list(range(n_seeds)), label=f"bench {name}", on_epoch=clock)
        return fn

    def run_reference(clock):
        seed_everything(0)
        return reference.reference_train(bench, dataclasses.replace(full, epochs=ref_epochs), device, on_epoch=clock)

    out["reference"] = time_training(run_reference, device)
    out["fast"] = time_training(run_fast(full), device)
    out["ratio"] = round(out["reference"]["s_per_epoch"] / out["fast"]["s_per_epoch"], 2)
    achieved = flop * iters / out["fast"]["s_per_epoch"]
    out["fast"]["tflop_s"] = round(achieved / 1e12, 3)
    out["fast"]["of_matmul_rate"] = round(achieved / rate, 4)
    out["baseline_fast"] = time_training(run_fast(baseline), device)
    if seeds > 1:
        many = time_training(run_fast(full, seeds), device)
        out["seeds"] = {"n": seeds, **many, "vs_one": round(many["s_per_epoch"] / out["fast"]["s_per_epoch"], 3)}

    seed_everything(0)
    model, _ = trainer.train(bench, dataclasses.replace(full, epochs=1), device, label=f"bench {name}")
    att, unseen = torch.as_tensor(bench.att, device=device), torch.as_tensor(bench.unseen, device=device)
    (x, y), out["generate_s"] = timed(lambda: generate(model, att, unseen, gen_cfg.syn_num), device)
    _, out["classify_s"] = timed(lambda: evaluate(bench, model, x.cpu().numpy(), y.cpu().numpy(), cls_cfg, device),
                                 device)
    out["generate_s"], out["classify_s"] = round(out["generate_s"], 3), round(out["classify_s"], 3)
    return out


def embedded_benchmark(name: str, params: dict) -> tuple[Benchmark, Benchmark]:
    """The embedded synthetic benchmark ``name`` itself (test and validation splits)."""
    src = dataset_source(params, name)
    with tempfile.TemporaryDirectory() as tmp:
        write_benchmark(src.synthetic, Path(tmp))
        splits = prepare(Path(tmp), prepare_config(params))
    return splits["test"], splits["val"]


def bench_pipeline(name: str, params: dict, device: torch.device, seeds: list[int],
                   modes: tuple[str, ...] = ("seed_by_seed", "side_by_side")) -> dict:
    """What ``dvc repro`` computes for ``name`` (published epochs), per stage and in total:
    once with each seed run on its own (as the per-seed stages do), once side by side.

    SYN runs on the embedded benchmark itself, so its accuracy (``metrics``) means something:
    that is how TF32 and side-by-side training are checked against seed noise. The other
    shapes have random features, and only their times mean something.
    """
    if name == "SYN":
        bench, val = embedded_benchmark(name, params)
    else:
        bench, val = random_benchmark(SHAPES[name]), random_benchmark(validation_shape(SHAPES[name]), seed=1)
    train_cfg = stage_config(params, "train", name)
    run = pipeline.RunConfig(train_cfg, stage_config(params, "generate", name),
                             stage_config(params, "classify", name), device)

    def finish(seed: int, model, val_model) -> tuple[float, float, dict]:
        """generate + classify (validation choices, then test) for one seed, with the stages'
        own functions; seconds, metrics."""
        (syn, val_syn), t_gen = timed(lambda: (run_generate(bench, model, run, seed),
                                               run_generate(val, val_model, run, seed)), device)
        validation = pipeline.Validation(val, val_model, *val_syn) if validation_needed(run.classify) else None
        (metrics, *_), t_cls = timed(lambda: run_classify(bench, model, *syn, run, seed, validation), device)
        return t_gen, t_cls, {k: metrics[k] for k in ("T1", "U", "S", "H")}

    one = {"train_s": 0.0, "train_val_s": 0.0, "generate_s": 0.0, "classify_s": 0.0}
    scores: dict[str, list[dict]] = {"seed_by_seed": [], "side_by_side": []}
    for seed in seeds if "seed_by_seed" in modes else []:
        model, t_train = timed(lambda: trainer.run_train(bench, run, seed, f"pipeline {name} train")[0], device)
        val_model, t_val = timed(lambda: trainer.run_train(val, run, seed, f"pipeline {name} train_val")[0], device)
        t_gen, t_cls, m = finish(seed, model, val_model)
        scores["seed_by_seed"].append(m)
        for key, t in zip(one, (t_train, t_val, t_gen, t_cls)):
            one[key] += t
    batched = dict.fromkeys(one, 0.0)
    models, val_models = [], []
    if "side_by_side" in modes:
        models, batched["train_s"] = timed(lambda: trainer.train_many(bench, train_cfg, device, seeds), device)
        val_models, batched["train_val_s"] = timed(lambda: trainer.train_many(val, train_cfg, device, seeds), device)
    for seed, (model, _), (val_model, _) in zip(seeds, models, val_models):
        t_gen, t_cls, m = finish(seed, model, val_model)
        scores["side_by_side"].append(m)
        batched["generate_s"] += t_gen
        batched["classify_s"] += t_cls
    result = {"seeds": seeds, "epochs": train_cfg.epochs}
    for label, t in (("seed_by_seed", one), ("side_by_side", batched)):
        if label not in modes:
            continue
        result[label] = {k: round(v, 2) for k, v in t.items()} | {"total_s": round(sum(t.values()), 2)}
        result[label]["metrics"] = scores[label]
        result[label]["H_mean"] = round(statistics.mean(m["H"] for m in scores[label]), 2)
    return result


def profile(name: str, params: dict, device: torch.device, iters: int = 10) -> str:
    """Where one fast iteration spends device time: torch.profiler's top operators."""
    bench = random_benchmark(SHAPES[name])
    cfg = dataclasses.replace(stage_config(params, "train", name), cls_pretrain_epochs=1)
    seed_everything(0)
    state = trainer.setup(bench, cfg, device)
    for _ in range(3):
        trainer.iteration(state)
    _sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            trainer.iteration(state)
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=30)


# --------------------------------------------------------------------------- report


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def table(result: dict) -> str:
    head = ("shape", "ref s/ep", "fast s/ep", "x faster", "base s/ep", "seeds s/ep (x one)",
            "gen s", "classify s", "TFLOP/s (of matmul)")
    rows = [head]
    for name, r in result["shapes"].items():
        seeds = f"{r['seeds']['s_per_epoch']:.4f} ({r['seeds']['vs_one']:.2f}, n={r['seeds']['n']})" if "seeds" in r else "-"
        rows.append((name, f"{r['reference']['s_per_epoch']:.4f}", f"{r['fast']['s_per_epoch']:.4f}", f"{r['ratio']:.1f}",
                     f"{r['baseline_fast']['s_per_epoch']:.4f}", seeds, f"{r['generate_s']:.3f}",
                     f"{r['classify_s']:.2f}", f"{r['fast']['tflop_s']:.2f} ({100 * r['fast']['of_matmul_rate']:.1f}%)"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    for name, p in result.get("pipeline", {}).items():
        for mode in ("seed_by_seed", "side_by_side"):
            if mode not in p:
                continue
            t = p[mode]
            lines.append(f"pipeline {name} x {len(p['seeds'])} seeds, {mode}: {t['total_s']:.1f} s (train {t['train_s']:.1f}, "
                         f"train_val {t['train_val_s']:.1f}, generate {t['generate_s']:.1f}, classify {t['classify_s']:.1f}); "
                         f"H {t['H_mean']:.1f} (" + " ".join(f"{m['H']:.1f}" for m in t["metrics"]) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bsegn.research.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="SYN only, 2 epochs, 2 seeds: under a minute on a CPU")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), help="default: SYN CUB SUN AWA2 FLO")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--epochs", type=int, default=4, help="fast-trainer epochs per measurement (default 4)")
    parser.add_argument("--ref-epochs", type=int, default=2, help="reference-loop epochs (default 2)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds trained side by side (default 5; 1 = skip)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None,
                        help="TF32 matrix products on CUDA (default: base.tf32 of the params file)")
    parser.add_argument("--pipeline", nargs="*", metavar="DATASET", choices=sorted(SHAPES),
                        help="also time the whole per-dataset pipeline at published epochs for these shapes")
    parser.add_argument("--pipeline-seeds", type=int, default=3, help="seeds of each --pipeline run (default 3)")
    parser.add_argument("--pipeline-modes", nargs="+", default=["seed_by_seed", "side_by_side"],
                        choices=["seed_by_seed", "side_by_side"], help="each seed on its own, side by side, or both")
    parser.add_argument("--pipeline-only", action="store_true", help="skip the per-shape epoch timings")
    parser.add_argument("--profile", choices=sorted(SHAPES), help="only print where an iteration of this shape spends time")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", help="write the JSON here (the committed record is records/bench.json; default: none)")
    args = parser.parse_args(argv)
    if args.quick:
        shapes, args.epochs, args.ref_epochs, args.seeds = ["SYN"], 2, 2, 2
    else:
        shapes = args.shapes or list(SHAPES)
    for flag in ("epochs", "ref_epochs", "pipeline_seeds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")

    params = load_params(args.params)
    if args.tf32 is None:
        args.tf32 = base_config(params).tf32
    device = resolve_device(args.device, args.tf32)
    if args.profile:
        print(profile(args.profile, params, device))
        return {}
    rate = matmul_rate(device)
    result = {"device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m bsegn.research.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "quick": args.quick, "tf32": args.tf32, "matmul_tflop_s": round(rate / 1e12, 3), "shapes": {}}
    for name in shapes if not args.pipeline_only else []:
        result["shapes"][name] = bench_shape(name, params, device, args.epochs, args.ref_epochs, args.seeds, rate)
        print(f"bench {name}: done", file=sys.stderr, flush=True)
    if args.pipeline:
        result["pipeline"] = {name: bench_pipeline(name, params, device, list(range(args.pipeline_seeds)),
                                                   tuple(args.pipeline_modes)) for name in args.pipeline}
    result["host_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.out:
        save_json(result, args.out)
    print(f"{result['device']}, torch {result['torch']}, matmul {result['matmul_tflop_s']:.1f} TFLOP/s, "
          f"host peak {result['host_peak_mib']:.0f} MiB" + (f" -> {args.out}" if args.out else ""))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
