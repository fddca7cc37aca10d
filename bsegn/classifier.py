"""The final softmax classifier, trained on real seen + synthetic unseen features."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F_

from .config import ClassifyConfig
from .errors import PipelineError
from .nets import SoftmaxClassifier

# an epoch-mean cross-entropy beyond this is a classifier gone wrong: a healthy one starts near
# log(n_classes) < 7 and falls; one whose lr is far too large swings to thousands of nats
DIVERGED = 1e3


class ClassifierDiverged(PipelineError):
    """The softmax's loss became non-finite or absurdly large: no metrics are reported from it."""


def fit_softmax(x: torch.Tensor, y_idx: torch.Tensor, n_classes: int, cfg: ClassifyConfig,
                on_epoch: Callable[[int, SoftmaxClassifier], None] | None = None) -> SoftmaxClassifier:
    """Train a linear softmax on ``x``: (n, d) with labels ``y_idx`` in 0..n_classes-1.

    ``on_epoch(epoch, clf)`` is called after every epoch (per-epoch evaluation).
    """
    clf = SoftmaxClassifier(x.shape[1], n_classes).to(x.device)
    # fused (one kernel per step) on CUDA; PyTorch's default on the CPU, as before
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), fused=x.is_cuda or None)
    for epoch in range(1, cfg.epochs + 1):
        clf.train()
        batches = torch.randperm(len(x), device=x.device).split(cfg.batch_size)
        total = torch.zeros((), device=x.device)  # summed on the device: one host read per epoch
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            loss = F_.cross_entropy(clf(x[idx]), y_idx[idx])
            loss.backward()
            opt.step()
            total += loss.detach()
        mean = total.item() / len(batches)
        if not (math.isfinite(mean) and mean <= DIVERGED):
            raise ClassifierDiverged(
                f"the softmax classifier diverged at epoch {epoch}: mean cross-entropy {mean:g}; "
                f"look at classify.<DATASET>.lr (now {cfg.lr:g}) and batch_size (now {cfg.batch_size})")
        clf.eval()
        if on_epoch is not None:
            on_epoch(epoch, clf)
    return clf


@torch.no_grad()
def predict_scores(clf: SoftmaxClassifier, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """(n, d) -> (n, n_classes) log-probabilities, in batches to bound memory."""
    return torch.cat([clf(xb).log_softmax(dim=1) for xb in x.split(batch)])
