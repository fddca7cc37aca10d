"""ZSL and GZSL evaluation with the final classifier.

* ZSL: a softmax over the unseen classes, trained on synthetic unseen features only,
  tested on the unseen test images -> T1.
* GZSL: a softmax over all classes, trained on real seen training features + synthetic
  unseen features, tested on both test sets -> U, S, H.

Headline numbers never look at test data: the classifier runs a fixed number of epochs,
``classify.epochs`` or the counts chosen on the class-level validation split
(:func:`select_on_validation`), and calibrated stacking uses a constant chosen there too.
The per-epoch curve is kept, and the "test-selected" numbers (the best epoch on the test
set, as most published code reports) are returned under their own key, never mixed in.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from . import mfim
from .classifier import fit_softmax, predict_scores
from .config import ClassifyConfig
from .data import Benchmark
from .metrics import gzsl_scores, per_class_accuracy
from .trainer import GenerativeModel


def _index(class_ids: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Map class ids ``y`` to positions in the sorted ``class_ids``."""
    pos = np.searchsorted(class_ids, y)
    assert np.all(class_ids[pos] == y), "label outside the classifier's classes"
    return pos


def calibrated_predictions(scores: torch.Tensor, seen_cols: torch.Tensor, gamma: float) -> torch.Tensor:
    """Calibrated stacking (Chao et al., 2016): argmax of the scores minus ``gamma`` on seen classes.

    ``scores``: (n, n_cls) log-probabilities; ``seen_cols``: (n_cls,) bool. Returns (n,) columns.
    """
    return (scores - gamma * seen_cols.to(scores.dtype)).argmax(1)


def gamma_grid(scores: torch.Tensor, seen_cols: torch.Tensor, n: int = 41) -> np.ndarray:
    """Candidate gammas: quantiles of how far each sample's best seen score leads its best
    unseen one (negative where unseen leads), so both directions of bias can be corrected."""
    lead = scores[:, seen_cols].max(1).values - scores[:, ~seen_cols].max(1).values
    return np.unique(np.concatenate([[0.0], np.quantile(lead.cpu().numpy(), np.linspace(0, 1, n))]))


def evaluate(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray,
             cfg: ClassifyConfig, device: torch.device, epochs: dict | None = None,
             gamma: float | None = None, search_gamma: bool = False) -> tuple[dict, list[dict], dict]:
    """Fit the ZSL and GZSL classifiers; return ``(metrics, per-epoch curve, predictions)``.

    ``epochs``: ``{"zsl": n, "gzsl": m}`` classifier epochs (default ``cfg.epochs`` for both).
    ``gamma``: apply calibrated stacking with this constant (columns ``*_cs``).
    ``search_gamma``: on validation data, also find the best gamma at every epoch.
    """
    epochs = epochs or {"zsl": cfg.epochs, "gzsl": cfg.epochs}

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    train_x, syn_xt = t(bench.train_x), t(syn_x)
    scales = mfim.fit_scales(model, torch.cat([train_x, syn_xt]), cfg.mfim_levels, cfg.mfim_per_sample)

    def phi(x: torch.Tensor) -> torch.Tensor:  # (n, d_feat) -> (n, d_mfim)
        return mfim.integrate(model, x, cfg.mfim_levels, scales, cfg.mfim_per_sample)

    syn_phi, test_seen, test_unseen = phi(syn_xt), phi(t(bench.test_seen_x)), phi(t(bench.test_unseen_x))
    history: dict[int, dict] = {}
    predictions: dict[str, np.ndarray] = {}

    # ZSL: unseen classes only
    unseen = np.sort(bench.unseen)

    def zsl_epoch(epoch: int, clf) -> None:
        pred = unseen[predict_scores(clf, test_unseen).argmax(1).cpu().numpy()]
        history.setdefault(epoch, {"epoch": epoch})["T1"] = per_class_accuracy(bench.test_unseen_y, pred)

    fit_softmax(syn_phi, t(_index(unseen, syn_y)), len(unseen), replace(cfg, epochs=epochs["zsl"]), on_epoch=zsl_epoch)

    # GZSL: all classes, real seen + synthetic unseen
    classes = np.union1d(bench.seen, bench.unseen)
    seen_cols = t(np.isin(classes, bench.seen))
    gx = torch.cat([phi(train_x), syn_phi])
    gy = t(_index(classes, np.concatenate([bench.train_y, syn_y])))

    def scores_of(pred_seen: torch.Tensor, pred_unseen: torch.Tensor) -> dict:
        return gzsl_scores(bench.test_seen_y, classes[pred_seen.cpu().numpy()],
                           bench.test_unseen_y, classes[pred_unseen.cpu().numpy()])

    def gzsl_epoch(epoch: int, clf) -> None:
        ss, su = predict_scores(clf, test_seen), predict_scores(clf, test_unseen)
        row = history.setdefault(epoch, {"epoch": epoch})
        row.update(scores_of(ss.argmax(1), su.argmax(1)))
        if gamma is not None:
            cs = scores_of(calibrated_predictions(ss, seen_cols, gamma), calibrated_predictions(su, seen_cols, gamma))
            row.update({f"{k}_cs": v for k, v in cs.items()})
        if search_gamma:
            both = torch.cat([ss, su])
            best = max(((g, scores_of(calibrated_predictions(ss, seen_cols, g), calibrated_predictions(su, seen_cols, g)))
                        for g in gamma_grid(both, seen_cols)), key=lambda gs: gs[1]["H"])
            row.update({"gamma": float(best[0]), **{f"{k}_cs": v for k, v in best[1].items()}})
        if epoch == epochs["gzsl"]:
            predictions.update(test_seen_y=bench.test_seen_y, test_seen_pred=classes[ss.argmax(1).cpu().numpy()],
                               test_unseen_y=bench.test_unseen_y, test_unseen_pred=classes[su.argmax(1).cpu().numpy()],
                               seen=bench.seen, unseen=bench.unseen)

    fit_softmax(gx, gy, len(classes), replace(cfg, epochs=epochs["gzsl"]), on_epoch=gzsl_epoch)

    curve = [history[e] for e in sorted(history)]
    zsl_row, gzsl_row = history[epochs["zsl"]], history[epochs["gzsl"]]
    metrics = {"T1": zsl_row["T1"], **{k: gzsl_row[k] for k in ("U", "S", "H")},
               "epochs_zsl": epochs["zsl"], "epochs_gzsl": epochs["gzsl"]}
    if gamma is not None:
        metrics["calibrated"] = {"gamma": gamma, **{k: gzsl_row[f"{k}_cs"] for k in ("U", "S", "H")}}
    # labelled literature protocol: the best epoch chosen on the test set itself
    with_t1 = [r for r in curve if "T1" in r]
    with_h = [r for r in curve if "H" in r]
    best_h = max(with_h, key=lambda r: r["H"])
    metrics["test_selected"] = {"T1": max(r["T1"] for r in with_t1), "U": best_h["U"], "S": best_h["S"],
                                "H": best_h["H"], "epoch_T1": max(with_t1, key=lambda r: r["T1"])["epoch"],
                                "epoch_H": best_h["epoch"]}
    return _rounded(metrics), [_rounded(r) for r in curve], predictions


def select_on_validation(curve: list[dict], cfg: ClassifyConfig) -> dict:
    """Decisions from a validation-split curve (``evaluate(..., search_gamma=True)``).

    Classifier epochs: the best validation T1 (ZSL) and H (GZSL) when
    ``classify.select_epochs`` is ``val``, else ``classify.epochs``. Gamma: the best
    calibrated-stacking constant at the GZSL epoch count used.
    """
    if cfg.select_epochs == "val":
        epochs = {"zsl": max(curve, key=lambda r: r["T1"])["epoch"], "gzsl": max(curve, key=lambda r: r["H"])["epoch"]}
    else:
        epochs = {"zsl": cfg.epochs, "gzsl": cfg.epochs}
    row = next(r for r in curve if r["epoch"] == epochs["gzsl"])
    return {"epochs": epochs, "gamma": row["gamma"], "val_H": row["H"], "val_H_cs": row["H_cs"],
            "val_T1": next(r for r in curve if r["epoch"] == epochs["zsl"])["T1"]}


def validation_needed(cfg: ClassifyConfig) -> bool:
    return cfg.calibration or cfg.select_epochs == "val"


def choose_on_validation(val: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray,
                         cfg: ClassifyConfig, device: torch.device) -> dict:
    """Classifier epochs and calibration constant from the validation-split curve, plus the curve."""
    _, curve, _ = evaluate(val, model, syn_x, syn_y, cfg, device, search_gamma=True)
    return {**select_on_validation(curve, cfg), "curve": curve}


def _rounded(d: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else (round(v, 4) if isinstance(v, float) else v)
            for k, v in d.items()}
