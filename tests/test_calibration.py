"""The CPU stand-in for the f-CLSWGAN baseline that screens realistic-benchmark knobs."""

from __future__ import annotations

import numpy as np
import pytest

from bsegn.research import calibration
from bsegn.config import ConfigError
from bsegn.data import Benchmark

from shipped import PARAMS, classify_cfg


def _linear_benchmark(rng: np.random.Generator) -> tuple[Benchmark, np.ndarray]:
    """Class means exactly linear in the (normalised) semantics, no within-class spread."""
    n_cls, d_att, d_feat = 13, 4, 16
    att = rng.uniform(0.1, 1.0, size=(n_cls, d_att)).astype(np.float32)
    unit = att / np.linalg.norm(att, axis=1, keepdims=True)
    means = (unit @ rng.normal(size=(d_att, d_feat))).astype(np.float32)  # (n_cls, d_feat)
    seen, unseen = np.arange(10), np.arange(10, 13)
    train_y = np.repeat(seen, 3)
    bench = Benchmark(att, seen, unseen, means[train_y], train_y, means[seen], seen, means[unseen], unseen)
    return bench, means


def test_fakes_sit_on_the_semantics_regression_plus_seen_spread():
    bench, means = _linear_benchmark(np.random.default_rng(0))
    x, y = calibration.stand_in_fakes(bench, syn_num=4, rng=np.random.default_rng(1), ridge=1e-9)
    assert x.shape == (12, 16) and list(y) == [10] * 4 + [11] * 4 + [12] * 4
    np.testing.assert_allclose(x, means[y], atol=1e-4)  # no spread to add: exactly the unseen means
    bench.train_x = bench.train_x + np.tile([[0.5], [-0.5], [0.0]], (10, 16)).astype(np.float32)
    x, y = calibration.stand_in_fakes(bench, syn_num=50, rng=np.random.default_rng(1), ridge=1e-9)
    offsets = np.round(x - means[y], 4)
    assert set(np.unique(offsets)) == {-0.5, 0.0, 0.5}  # the seen residuals, resampled


def test_stand_in_scores_are_gzsl_metrics_of_the_pipelines_classifier():
    bench, _ = _linear_benchmark(np.random.default_rng(0))
    scores = calibration.stand_in_scores(bench, syn_num=3, cfg=classify_cfg(epochs=200, batch_size=8, lr=1e-2), seed=0)
    assert set(scores) == {"U", "S", "H"} and all(0.0 <= v <= 100.0 for v in scores.values())
    assert scores["H"] == pytest.approx(2 * scores["U"] * scores["S"] / (scores["U"] + scores["S"]))
    assert scores["U"] > 60 and scores["S"] > 60  # well-separated classes, exact fakes


def test_more_explained_semantics_make_unseen_classes_easier():
    """The knob the calibration turns most: the stand-in's U rises with `explained`."""
    small = {"d_feat": 128, "d_instance": 16, "kinship": 0.0}
    low = calibration.calibrate(PARAMS, "SYN_FLO", {**small, "explained": 0.0})
    high = calibration.calibrate(PARAMS, "SYN_FLO", {**small, "explained": 0.9})
    assert high["U"] > low["U"] + 10, (low, high)


def test_only_realistic_benchmarks_can_be_calibrated():
    with pytest.raises(ConfigError, match="download.sources.SYN: not a realistic benchmark"):
        calibration.calibrate(PARAMS, "SYN", {})
