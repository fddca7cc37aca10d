"""The final softmax classifier, trained on real seen + synthetic unseen features."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F_

from .config import ClassifyConfig
from .nets import SoftmaxClassifier


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
        for idx in torch.randperm(len(x), device=x.device).split(cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            F_.cross_entropy(clf(x[idx]), y_idx[idx]).backward()
            opt.step()
        clf.eval()
        if on_epoch is not None:
            on_epoch(epoch, clf)
    return clf


@torch.no_grad()
def predict_scores(clf: SoftmaxClassifier, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """(n, d) -> (n, n_classes) log-probabilities, in batches to bound memory."""
    return torch.cat([clf(xb).log_softmax(dim=1) for xb in x.split(batch)])
