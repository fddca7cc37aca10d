"""Loss functions, each a pure function of tensors (equations in docs/METHOD.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F_

from .nets import cosine_logits


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``E[(||grad_x D(x_hat, a)|| - 1)^2]`` on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat, a).sum(), x_hat, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def contrastive_f2s(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Feature -> semantics: each feature against every class vector, its own class positive.

    ``logits``: (n, n_cls) from :meth:`FEM.scores`; ``y``: (n,) class ids. A cross-entropy.
    """
    return F_.cross_entropy(logits, y)


def contrastive_s2f(emb: torch.Tensor, att: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Semantics -> feature: each class present in the batch against the batch's features.

    ``emb``: (n, d_att) FEM embeddings; ``att``: (n_cls, d_att) all class vectors; ``y``: (n,).
    For class c with positives P(c) = {j : y_j = c}:
    ``L_c = -1/|P(c)| sum_{p in P(c)} log softmax_j(cos(a_c, e_j) / tau)_p``, averaged over c.
    With one feature per class this is the cross-entropy of the transposed score matrix.
    """
    classes, inverse = torch.unique(y, return_inverse=True)  # (k,), (n,)
    logits = cosine_logits(att[classes], emb, temperature)  # (k, n)
    log_p = logits.log_softmax(dim=1)
    pos = F_.one_hot(inverse, len(classes)).T.to(log_p.dtype)  # (k, n): 1 where feature j is of class c
    return (-(log_p * pos).sum(1) / pos.sum(1)).mean()


def domain_log_mass(logits: torch.Tensor, unseen_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log of the softmax mass on seen classes and on unseen classes, each (n,)."""
    total = logits.logsumexp(dim=1)
    return logits[:, ~unseen_mask].logsumexp(dim=1) - total, logits[:, unseen_mask].logsumexp(dim=1) - total


def balance_loss(logits: torch.Tensor, unseen_mask: torch.Tensor, is_unseen: torch.Tensor) -> torch.Tensor:
    """Domain balance of the FEM's predictions.

    ``logits``: (n, n_cls); ``unseen_mask``: (n_cls,) bool, True for unseen classes;
    ``is_unseen``: (n,) bool, the true domain of each feature. With ``m_S``/``m_U`` the
    softmax mass on the seen/unseen class group,
    ``L_bal = 1/2 [mean_{i seen} -log m_S(x_i) + mean_{i unseen} -log m_U(x_i)]``:
    zero when every feature puts all its mass on its own domain, and each domain counts
    half whatever the batch composition, so the many real seen features cannot outvote
    the fake unseen ones. A domain absent from the batch is left out of the mean.
    """
    log_s, log_u = domain_log_mass(logits, unseen_mask)
    terms = []
    if (~is_unseen).any():
        terms.append(-log_s[~is_unseen].mean())
    if is_unseen.any():
        terms.append(-log_u[is_unseen].mean())
    return torch.stack(terms).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dims, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i ||pred_i - target_i||^2``: the VAE and the cycle-consistency loss."""
    return (pred - target).pow(2).sum(1).mean()
