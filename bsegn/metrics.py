"""GZSL metrics: per-class mean top-1 accuracy and the harmonic mean H."""

from __future__ import annotations

import numpy as np


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of each class's top-1 accuracy (in %).

    Averaging per class, not per image, keeps large classes from dominating (the
    protocol of Xian et al., "The Good, the Bad and the Ugly").
    """
    y_true, y_pred = _checked(y_true, y_pred)
    _, inverse = np.unique(y_true, return_inverse=True)
    # one pass with bincount instead of a mask per class: it runs at every classifier epoch
    # and for every calibration constant, and SUN has 717 classes
    correct = np.bincount(inverse, weights=(y_pred == y_true).astype(np.float64))
    return 100.0 * float(np.mean(correct / np.bincount(inverse)))


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, float]:
    """``{class: fraction of its images predicted correctly}`` for the classes in ``y_true``."""
    y_true, y_pred = _checked(y_true, y_pred)
    return {int(c): float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)}


def _checked(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be equal, non-empty shapes; got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def harmonic_mean(u: float, s: float) -> float:
    """H = 2US / (U + S); 0 when both are 0."""
    return 0.0 if u + s == 0 else 2.0 * u * s / (u + s)


def gzsl_scores(y_seen: np.ndarray, pred_seen: np.ndarray, y_unseen: np.ndarray, pred_unseen: np.ndarray) -> dict:
    """U, S and H (in %) from predictions over *all* classes on the two test sets."""
    u = per_class_accuracy(y_unseen, pred_unseen)
    s = per_class_accuracy(y_seen, pred_seen)
    return {"U": u, "S": s, "H": harmonic_mean(u, s)}
