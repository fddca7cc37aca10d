"""bsegn.metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from bsegn.metrics import gzsl_scores, harmonic_mean, per_class_accuracy


def test_per_class_accuracy_averages_classes_not_images():
    # class 0: 1 of 4 right (25%); class 1: 2 of 2 right (100%)
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 1, 1])
    assert per_class_accuracy(y_true, y_pred) == pytest.approx(62.5)
    assert 100 * np.mean(y_true == y_pred) == pytest.approx(50.0)  # the per-image figure it must not give


def test_per_class_accuracy_ignores_predicted_classes_absent_from_truth():
    # predictions of class 7 count as errors, but class 7 is not averaged in
    assert per_class_accuracy([3, 3, 5], [3, 7, 5]) == pytest.approx((50.0 + 100.0) / 2)


def test_per_class_accuracy_extremes():
    y = np.array([2, 2, 4, 9])
    assert per_class_accuracy(y, y) == 100.0
    assert per_class_accuracy(y, y + 1) == 0.0


@pytest.mark.parametrize("y_true, y_pred", [([0, 1, 1], [0, 1]), ([[0, 1]], [0, 1]), ([], [])])
def test_per_class_accuracy_rejects_mismatched_or_empty(y_true, y_pred):
    with pytest.raises(ValueError, match="shapes"):
        per_class_accuracy(np.array(y_true), np.array(y_pred))


def test_harmonic_mean():
    assert harmonic_mean(50.0, 100.0) == pytest.approx(66.6667, abs=1e-4)
    assert harmonic_mean(100.0, 50.0) == pytest.approx(66.6667, abs=1e-4)
    assert harmonic_mean(40.0, 40.0) == pytest.approx(40.0)
    assert harmonic_mean(0.0, 80.0) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_gzsl_scores():
    # seen test set: classes 0 and 1, per-class 25% and 100% -> S = 62.5
    y_seen, pred_seen = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 1, 1, 1, 1, 1])
    # unseen test set: classes 2 and 3, 50% each (one image each mistaken for a seen class) -> U = 50
    y_unseen, pred_unseen = np.array([2, 2, 3, 3]), np.array([2, 0, 3, 1])

    scores = gzsl_scores(y_seen, pred_seen, y_unseen, pred_unseen)

    assert scores["S"] == pytest.approx(62.5)
    assert scores["U"] == pytest.approx(50.0)
    assert scores["H"] == pytest.approx(2 * 62.5 * 50.0 / 112.5)


def test_gzsl_scores_mismatched_shapes():
    with pytest.raises(ValueError):
        gzsl_scores(np.array([0, 1]), np.array([0, 1]), np.array([2, 3]), np.array([2]))
