"""A CPU stand-in for the f-CLSWGAN baseline, used to set a realistic benchmark's knobs.

The realistic benchmarks (``bsegn/realistic.py``) are calibrated so that the f-CLSWGAN
baseline lands near its published numbers. Training it is GPU work, minutes per run, and
finding the knobs takes many runs. So settings are first screened with this stand-in, and
only the promising ones are run on a GPU:

* a linear "generator": ridge regression from class semantics to the seen classes' mean
  features, fitted on trainval. The fakes of an unseen class are its predicted mean plus
  the residuals of randomly drawn real seen images (the seen within-class spread);
* the pipeline's own final classifier (``classify`` settings of the dataset: linear
  softmax, its epochs, learning rate and batch size) on real seen + ``syn_num`` fakes per
  unseen class, scored with the pipeline's GZSL metrics.

It is a calibration tool, not a method. docs/log/2026-11-28-realistic-calibration.md compares
it with GPU runs of the real baseline: its predictions held within 3-7 H points on the shipped
knobs; at earlier settings it was within 2 on SYN_CUB, 5-9 high on SYN_SUN and SYN_AWA2 and
15-25 low on SYN_FLO (docs/METHOD.md, "Benchmarks", says how the knobs were set).

    python -m bsegn.research.calibration --dataset SYN_CUB -S explained=0.3 -S noise=4
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import config, data, realistic
from ..classifier import fit_softmax, predict_scores
from ..config import ClassifyConfig
from ..data import Benchmark
from ..metrics import gzsl_scores


def stand_in_fakes(bench: Benchmark, syn_num: int, rng: np.random.Generator,
                   ridge: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(x: (n_unseen * syn_num, d_feat), y)`` fakes for the unseen classes."""
    att = bench.att / np.linalg.norm(bench.att, axis=1, keepdims=True)  # (n_cls, d_att)
    col = np.searchsorted(bench.seen, bench.train_y)
    means = np.stack([bench.train_x[col == i].mean(axis=0) for i in range(len(bench.seen))])  # (n_seen, d_feat)
    a = att[bench.seen]
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ means)  # (d_att, d_feat)
    residuals = bench.train_x - means[col]
    x = np.concatenate([att[c] @ w + residuals[rng.integers(0, len(residuals), syn_num)] for c in bench.unseen])
    return x.astype(np.float32), np.repeat(bench.unseen, syn_num)


def stand_in_scores(bench: Benchmark, syn_num: int, cfg: ClassifyConfig, seed: int) -> dict:
    """GZSL U, S, H (%) of the stand-in baseline on ``bench``."""
    torch.manual_seed(seed)
    fake_x, fake_y = stand_in_fakes(bench, syn_num, np.random.default_rng(seed))
    classes = np.concatenate([bench.seen, bench.unseen])
    order = np.argsort(classes)
    column = np.empty(int(classes.max()) + 1, dtype=np.int64)
    column[classes[order]] = order
    x = torch.as_tensor(np.concatenate([bench.train_x, fake_x]))
    y = torch.as_tensor(column[np.concatenate([bench.train_y, fake_y])])
    clf = fit_softmax(x, y, len(classes), cfg)

    def predict(features: np.ndarray) -> np.ndarray:
        return classes[predict_scores(clf, torch.as_tensor(features)).argmax(dim=1).numpy()]

    return gzsl_scores(bench.test_seen_y, predict(bench.test_seen_x), bench.test_unseen_y, predict(bench.test_unseen_x))


def calibrate(params: dict, dataset: str, changes: dict[str, object], seed: int = 0) -> dict:
    """The stand-in's U, S, H on ``dataset`` with its ``realistic`` knobs changed by ``changes``."""
    source = config.download_config(params).sources[dataset]
    if source.realistic is None:
        raise config.ConfigError(f"download.sources.{dataset}: not a realistic benchmark (no 'realistic' block)")
    knobs = dataclasses.replace(source.realistic, **changes)
    with tempfile.TemporaryDirectory() as tmp:
        realistic.write_benchmark(knobs, tmp)
        bench = data.prepare(tmp, config.prepare_config(params))["test"]
    run_cfg = config.stage_config(params, "classify", dataset)
    syn_num = config.stage_config(params, "generate", dataset).syn_num
    return stand_in_scores(bench, syn_num, run_cfg, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a realistic benchmark of params.yaml, e.g. SYN_CUB")
    parser.add_argument("-S", dest="sets", action="append", default=[], metavar="KNOB=VALUE",
                        help="change one knob of download.sources.<dataset>.realistic (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    changes = {}
    for item in args.sets:
        knob, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-S {item!r}: expected KNOB=VALUE")
        changes[knob] = yaml.safe_load(value)
    fields = {f.name for f in dataclasses.fields(config.RealisticConfig)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        parser.error(f"unknown knob(s) {unknown}; known: {sorted(fields)}")
    scores = calibrate(config.load_params(Path(args.params)), args.dataset, changes, args.seed)
    print(f"{args.dataset} {changes}: stand-in baseline U {scores['U']:.1f}  S {scores['S']:.1f}  H {scores['H']:.1f}")


if __name__ == "__main__":
    main()
