"""ZSL and GZSL evaluation with the final classifier.

* ZSL: a softmax over the unseen classes, trained on synthetic unseen features only,
  tested on the unseen test images -> T1.
* GZSL: a softmax over all classes, trained on real seen training features + synthetic
  unseen features, tested on both test sets -> U, S, H.

Headline numbers are those of the last classifier epoch (``classify.epochs`` is fixed in
params: no decision looks at test data). The per-epoch curve is kept too, and the
"test-selected" numbers (the best epoch on the test set, as most published code reports)
are returned under their own key, never mixed with the headline ones.
"""

from __future__ import annotations

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


def evaluate(bench: Benchmark, model: GenerativeModel, syn_x: np.ndarray, syn_y: np.ndarray,
             cfg: ClassifyConfig, device: torch.device) -> tuple[dict, list[dict]]:
    """Fit the ZSL and GZSL classifiers; return ``(metrics, per-epoch history)``."""
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    train_x, syn_xt = t(bench.train_x), t(syn_x)
    scales = mfim.fit_scales(model, torch.cat([train_x, syn_xt]), cfg.mfim_levels)

    def phi(x: torch.Tensor) -> torch.Tensor:  # (n, d_feat) -> (n, d_mfim)
        return mfim.integrate(model, x, cfg.mfim_levels, scales)

    syn_phi, test_seen, test_unseen = phi(syn_xt), phi(t(bench.test_seen_x)), phi(t(bench.test_unseen_x))
    history: dict[int, dict] = {}

    # ZSL: unseen classes only
    unseen = np.sort(bench.unseen)

    def zsl_epoch(epoch: int, clf) -> None:
        pred = unseen[predict_scores(clf, test_unseen).argmax(1).cpu().numpy()]
        history.setdefault(epoch, {"epoch": epoch})["T1"] = per_class_accuracy(bench.test_unseen_y, pred)

    fit_softmax(syn_phi, t(_index(unseen, syn_y)), len(unseen), cfg, on_epoch=zsl_epoch)

    # GZSL: all classes, real seen + synthetic unseen
    classes = np.union1d(bench.seen, bench.unseen)
    gx = torch.cat([phi(train_x), syn_phi])
    gy = t(_index(classes, np.concatenate([bench.train_y, syn_y])))

    def gzsl_epoch(epoch: int, clf) -> None:
        ps = classes[predict_scores(clf, test_seen).argmax(1).cpu().numpy()]
        pu = classes[predict_scores(clf, test_unseen).argmax(1).cpu().numpy()]
        history[epoch].update(gzsl_scores(bench.test_seen_y, ps, bench.test_unseen_y, pu))

    fit_softmax(gx, gy, len(classes), cfg, on_epoch=gzsl_epoch)

    curve = [history[e] for e in sorted(history)]
    final = curve[-1]
    best_h = max(curve, key=lambda r: r["H"])
    metrics = {
        "T1": final["T1"], "U": final["U"], "S": final["S"], "H": final["H"],
        # labelled literature protocol: best epoch chosen on the test set
        "test_selected": {"T1": max(r["T1"] for r in curve), "U": best_h["U"], "S": best_h["S"],
                          "H": best_h["H"], "epoch_T1": max(curve, key=lambda r: r["T1"])["epoch"],
                          "epoch_H": best_h["epoch"]},
    }
    return _rounded(metrics), [_rounded(r) for r in curve]


def _rounded(d: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else (round(v, 4) if isinstance(v, float) else v)
            for k, v in d.items()}
