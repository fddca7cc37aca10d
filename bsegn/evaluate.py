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

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import mfim
from .classifier import fit_softmax, predict_scores
from .config import ClassifyConfig
from .data import Benchmark
from .metrics import gzsl_scores, per_class_accuracy
from .model import GenerativeModel
from .pipeline import RunConfig, Validation
from .runtime import seed_everything


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


@dataclass
class MfimFeatures:
    """The mFIM features of everything the final classifiers see; each (n, d_mfim)."""

    train: torch.Tensor  # real seen training features
    syn: torch.Tensor  # synthetic unseen features
    test_seen: torch.Tensor
    test_unseen: torch.Tensor


def mfim_features(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, cfg: ClassifyConfig,
                  device: torch.device) -> MfimFeatures:
    """Apply the mFIM to every feature set. Its scales are fitted on the GZSL classifier's
    training set (real seen + synthetic unseen) and used for all four sets, the ZSL
    classifier's training set included."""
    train_x, syn_xt = torch.as_tensor(bench.train_x, device=device), torch.as_tensor(syn_x, device=device)
    scales = mfim.fit_scales(model, torch.cat([train_x, syn_xt]), cfg.mfim_levels, cfg.mfim_per_sample,
                             cfg.mfim_scaling)

    def phi(x) -> torch.Tensor:  # (n, d_feat) -> (n, d_mfim)
        return mfim.integrate(model, torch.as_tensor(x, device=device), cfg.mfim_levels, scales, cfg.mfim_per_sample)

    return MfimFeatures(phi(train_x), phi(syn_xt), phi(bench.test_seen_x), phi(bench.test_unseen_x))


def zsl_curve(bench: Benchmark, feats: MfimFeatures, syn_y: np.ndarray, cfg: ClassifyConfig,
              epochs: int) -> dict[int, dict]:
    """ZSL: a softmax over the unseen classes, trained on synthetic unseen features only;
    ``{epoch: {"T1": ...}}`` on the unseen test images after every epoch."""
    unseen = np.sort(bench.unseen)
    y_idx = torch.as_tensor(_index(unseen, syn_y), device=feats.syn.device)
    curve: dict[int, dict] = {}

    def on_epoch(epoch: int, clf) -> None:
        pred = unseen[predict_scores(clf, feats.test_unseen).argmax(1).cpu().numpy()]
        curve[epoch] = {"T1": per_class_accuracy(bench.test_unseen_y, pred)}

    fit_softmax(feats.syn, y_idx, len(unseen), replace(cfg, epochs=epochs), on_epoch=on_epoch)
    return curve


def gzsl_training_set(bench: Benchmark, feats: MfimFeatures, syn_y: np.ndarray,
                      classes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Real seen training features + synthetic unseen ones, and their column in ``classes``."""
    x = torch.cat([feats.train, feats.syn])
    y_idx = _index(classes, np.concatenate([bench.train_y, syn_y]))
    return x, torch.as_tensor(y_idx, device=x.device)


def gzsl_row(bench: Benchmark, classes: np.ndarray, seen_cols: torch.Tensor, scores_seen: torch.Tensor,
             scores_unseen: torch.Tensor, gamma: float | None, search_gamma: bool) -> dict:
    """U, S, H of one classifier from its test scores; with ``gamma`` also calibrated stacking
    (``*_cs``); with ``search_gamma`` the best constant of :func:`gamma_grid` and its scores."""
    def scores_at(g: float) -> dict:
        pred_seen = calibrated_predictions(scores_seen, seen_cols, g).cpu().numpy()
        pred_unseen = calibrated_predictions(scores_unseen, seen_cols, g).cpu().numpy()
        return gzsl_scores(bench.test_seen_y, classes[pred_seen], bench.test_unseen_y, classes[pred_unseen])

    row = scores_at(0.0)  # no calibration: the plain argmax
    if gamma is not None:
        row.update({f"{k}_cs": v for k, v in scores_at(gamma).items()})
    if search_gamma:
        grid = gamma_grid(torch.cat([scores_seen, scores_unseen]), seen_cols)
        best_gamma, best = max(((g, scores_at(g)) for g in grid), key=lambda gs: gs[1]["H"])
        row.update({"gamma": float(best_gamma), **{f"{k}_cs": v for k, v in best.items()}})
    return row


def gzsl_curve(bench: Benchmark, feats: MfimFeatures, syn_y: np.ndarray, cfg: ClassifyConfig, epochs: int,
               gamma: float | None, search_gamma: bool, keep: int | None = None) -> tuple[dict[int, dict], dict]:
    """GZSL: a softmax over all classes on real seen + synthetic unseen features;
    ``{epoch: row of gzsl_row}`` after every epoch, and the test predictions after epoch
    ``keep`` (default: the last)."""
    keep = keep or epochs
    classes = np.union1d(bench.seen, bench.unseen)
    seen_cols = torch.as_tensor(np.isin(classes, bench.seen), device=feats.syn.device)
    x, y_idx = gzsl_training_set(bench, feats, syn_y, classes)
    curve: dict[int, dict] = {}
    last: dict[str, torch.Tensor] = {}

    def on_epoch(epoch: int, clf) -> None:
        scores_seen, scores_unseen = predict_scores(clf, feats.test_seen), predict_scores(clf, feats.test_unseen)
        curve[epoch] = gzsl_row(bench, classes, seen_cols, scores_seen, scores_unseen, gamma, search_gamma)
        if epoch == keep:
            last["seen"], last["unseen"] = scores_seen, scores_unseen

    fit_softmax(x, y_idx, len(classes), replace(cfg, epochs=epochs), on_epoch=on_epoch)
    predictions = {"test_seen_y": bench.test_seen_y, "test_seen_pred": classes[last["seen"].argmax(1).cpu().numpy()],
                   "test_unseen_y": bench.test_unseen_y, "test_unseen_pred": classes[last["unseen"].argmax(1).cpu().numpy()],
                   "seen": bench.seen, "unseen": bench.unseen}
    return curve, predictions


def test_selected(curve: list[dict]) -> dict:
    """The literature's protocol, reported under its own name: the best epoch on the test set."""
    with_t1 = [r for r in curve if "T1" in r]
    best_h = max((r for r in curve if "H" in r), key=lambda r: r["H"])
    best_t1 = max(with_t1, key=lambda r: r["T1"])
    return {"T1": best_t1["T1"], "U": best_h["U"], "S": best_h["S"], "H": best_h["H"],
            "epoch_T1": best_t1["epoch"], "epoch_H": best_h["epoch"]}


def evaluate(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray,
             cfg: ClassifyConfig, device: torch.device, epochs: dict | None = None,
             gamma: float | None = None, search_gamma: bool = False) -> tuple[dict, list[dict], dict]:
    """Fit the ZSL and GZSL classifiers; return ``(metrics, per-epoch curve, predictions)``.

    ``epochs``: ``{"zsl": n, "gzsl": m}`` classifier epochs (default ``cfg.epochs`` for both).
    ``gamma``: apply calibrated stacking with this constant (columns ``*_cs``).
    ``search_gamma``: on validation data, also find the best gamma at every epoch.
    The headline metrics (and the predictions) are those after the given epoch counts. The
    classifiers always run ``cfg.epochs``, so the curve, and ``test_selected`` (the best
    epochs on the test set), cover the whole budget whatever epochs were chosen.
    """
    epochs = epochs or {"zsl": cfg.epochs, "gzsl": cfg.epochs}
    if max(epochs.values()) > cfg.epochs or min(epochs.values()) < 1:
        raise ValueError(f"classifier epochs {epochs} outside 1..classify.epochs={cfg.epochs}")
    feats = mfim_features(bench, model, syn_x, cfg, device)
    zsl = zsl_curve(bench, feats, syn_y, cfg, cfg.epochs)  # fitted first: the random stream's order
    gzsl, predictions = gzsl_curve(bench, feats, syn_y, cfg, cfg.epochs, gamma, search_gamma, keep=epochs["gzsl"])
    curve = [{"epoch": e, **zsl.get(e, {}), **gzsl.get(e, {})} for e in sorted(zsl.keys() | gzsl.keys())]

    last = gzsl[epochs["gzsl"]]
    metrics = {"T1": zsl[epochs["zsl"]]["T1"], **{k: last[k] for k in ("U", "S", "H")},
               "epochs_zsl": epochs["zsl"], "epochs_gzsl": epochs["gzsl"]}
    if gamma is not None:
        metrics["calibrated"] = {"gamma": gamma, **{k: last[f"{k}_cs"] for k in ("U", "S", "H")}}
    metrics["test_selected"] = test_selected(curve)
    # what guessing scores: ZSL among the unseen classes, GZSL among all (U = S = H = 100/n)
    metrics["chance"] = {"T1": 100.0 / len(bench.unseen), "H": 100.0 / (len(bench.seen) + len(bench.unseen))}
    return _rounded(metrics), [_rounded(r) for r in curve], predictions


def select_on_validation(curve: list[dict], cfg: ClassifyConfig) -> dict:
    """Decisions from a validation-split curve (``evaluate(..., search_gamma=True)``).

    Classifier epochs: the best validation T1 (ZSL) and H (GZSL) when
    ``classify.select_epochs`` is ``val``, else ``classify.epochs``; with calibrated
    stacking on, the GZSL epoch is the one whose *calibrated* H is best, since that is the
    number the run reports (the two can peak apart: an epoch that overfits the seen
    classes may calibrate well). Gamma: the best calibrated-stacking constant at the GZSL
    epoch count used.
    """
    if cfg.select_epochs == "val":
        h_key = "H_cs" if cfg.calibration else "H"
        epochs = {"zsl": max(curve, key=lambda r: r["T1"])["epoch"], "gzsl": max(curve, key=lambda r: r[h_key])["epoch"]}
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


def select(validation: Validation, run: RunConfig, seed: int) -> dict:
    """The validation-split choices of ``classify`` (classifier epochs, calibration constant, and
    the curve they come from), made as the stage makes them: after re-seeding."""
    seed_everything(seed)
    return choose_on_validation(validation.bench, validation.model, validation.syn_x, validation.syn_y,
                                run.classify, run.device)


def classify_with(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray, run: RunConfig,
                  seed: int, selection: dict | None) -> tuple[dict, list[dict], dict]:
    """The test metrics at ``selection``'s choices (``None``: ``classify.epochs``, uncalibrated),
    after re-seeding: ``(metrics, per-epoch curve, predictions)``."""
    seed_everything(seed)
    return evaluate(bench, model, syn_x, syn_y, run.classify, run.device,
                    epochs=selection["epochs"] if selection else None,
                    gamma=selection["gamma"] if selection and run.classify.calibration else None)


def run_classify(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray, run: RunConfig,
                 seed: int, validation: Validation | None) -> tuple[dict, list[dict], dict, dict | None]:
    """Stage ``classify``: choices on the validation split (when ``classify`` needs them:
    :func:`bsegn.evaluate.validation_needed`), then the test metrics.

    Returns ``(metrics, per-epoch curve, predictions, validation selection or None)``.
    """
    if validation_needed(run.classify) != (validation is not None):
        raise ValueError("run_classify: pass the train_val results exactly when "
                         "classify.select_epochs is 'val' or classify.calibration is on")
    selection = select(validation, run, seed) if validation is not None else None
    return (*classify_with(bench, model, syn_x, syn_y, run, seed, selection), selection)
