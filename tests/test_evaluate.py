"""Validation-split decisions and calibrated stacking, on hand-made inputs."""

import numpy as np
import torch

from bsegn.evaluate import calibrated_predictions, gamma_grid, select_on_validation
from shipped import classify_cfg

CURVE = [
    {"epoch": 1, "T1": 30.0, "H": 20.0, "gamma": 0.5, "H_cs": 25.0},
    {"epoch": 2, "T1": 50.0, "H": 40.0, "gamma": 0.2, "H_cs": 45.0},
    {"epoch": 3, "T1": 45.0, "H": 42.0, "gamma": 0.1, "H_cs": 43.0},
]


def test_val_selection_takes_the_best_validation_epochs_and_their_gamma():
    sel = select_on_validation(CURVE, classify_cfg(epochs=3, select_epochs="val", calibration=False))
    assert sel["epochs"] == {"zsl": 2, "gzsl": 3}
    assert sel["gamma"] == 0.1 and sel["val_H"] == 42.0 and sel["val_T1"] == 50.0


def test_val_selection_with_calibration_takes_the_best_calibrated_epoch():
    # epoch 3 has the best plain H, epoch 2 the best calibrated H: calibration reports the latter
    sel = select_on_validation(CURVE, classify_cfg(epochs=3, select_epochs="val", calibration=True))
    assert sel["epochs"] == {"zsl": 2, "gzsl": 2}
    assert sel["gamma"] == 0.2 and sel["val_H_cs"] == 45.0


def test_fixed_epochs_keep_the_configured_count_and_take_gamma_there():
    sel = select_on_validation(CURVE, classify_cfg(epochs=2, select_epochs="fixed"))
    assert sel["epochs"] == {"zsl": 2, "gzsl": 2} and sel["gamma"] == 0.2


def test_calibrated_stacking_moves_predictions_off_seen_classes():
    seen_cols = torch.tensor([True, True, False])
    scores = torch.log(torch.tensor([[0.5, 0.1, 0.4], [0.9, 0.05, 0.05]]))
    assert calibrated_predictions(scores, seen_cols, 0.0).tolist() == [0, 0]
    # log(0.5) - log(0.4) = 0.22 < 0.3 < log(0.9) - log(0.05) = 2.89: only the first one flips
    assert calibrated_predictions(scores, seen_cols, 0.3).tolist() == [2, 0]
    grid = gamma_grid(scores, seen_cols)
    assert 0.0 in grid and np.isclose(grid.max(), np.log(0.9 / 0.05))


def test_gamma_grid_spans_the_leads_with_n_quantiles():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(500, 6, generator=gen)
    seen_cols = torch.tensor([True, True, True, False, False, False])
    lead = (scores[:, :3].max(1).values - scores[:, 3:].max(1).values).numpy()
    grid = gamma_grid(scores, seen_cols, n=11)
    assert 0.0 in grid and len(grid) == 12  # 11 distinct quantiles and 0
    assert np.isclose(grid.min(), lead.min()) and np.isclose(grid.max(), lead.max())
    assert np.isclose(np.median(grid[grid != 0.0]), np.median(lead), atol=1e-6) or np.any(np.isclose(grid, np.median(lead)))
    assert len(gamma_grid(scores, seen_cols)) == 42  # the default: 41 quantiles and 0


def test_a_diverging_classifier_stops_with_an_error_naming_its_lr():
    """classify.<DS>.lr=1e6 used to finish with rc 0 and a near-chance H; it now stops the stage."""
    import dataclasses

    import pytest

    from bsegn.classifier import ClassifierDiverged, fit_softmax
    from bsegn.errors import PipelineError

    torch.manual_seed(0)
    x, y = torch.randn(300, 16), torch.randint(0, 5, (300,))
    cfg = dataclasses.replace(classify_cfg(), epochs=3)
    fit_softmax(x, y, 5, cfg)  # the shipped lr trains
    with pytest.raises(ClassifierDiverged, match=r"diverged at epoch 1: .*classify\.<DATASET>\.lr \(now 1e\+06\)"):
        fit_softmax(x, y, 5, dataclasses.replace(cfg, lr=1e6))
    assert issubclass(ClassifierDiverged, PipelineError)  # a stage prints it as one line
