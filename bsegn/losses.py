"""Loss functions, each a pure function of tensors (equations in docs/METHOD.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F_

from .nets import cosine_logits


def wgan_critic_terms(critic, real: torch.Tensor, fake: torch.Tensor, a: torch.Tensor,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The WGAN-GP critic's terms: the Wasserstein estimate ``E[D(real)] - E[D(fake)]`` and the
    gradient penalty ``E[(||grad_x D(x_hat, a)|| - 1)^2]`` on random interpolates of the two.

    ``real``, ``fake``: (n, d_feat); ``a``: (n, d_att). All three go through the critic as one
    batch of 3n rows (one read of its weights); rows do not interact, so the values are those
    of three separate passes.
    """
    n = real.shape[0]
    alpha = torch.rand(n, 1, device=real.device, generator=generator)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    d_real, d_fake, d_hat = critic(torch.cat([real, fake, x_hat]), a.repeat(3, 1)).split(n)
    grad, = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    return d_real.mean() - d_fake.mean(), ((grad.norm(2, dim=1) - 1) ** 2).mean()


def contrastive_f2s(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Feature -> semantics: each feature against every class vector, its own class positive.

    ``logits``: (n, n_cls), :func:`bsegn.nets.cosine_logits` of the FEM embeddings; ``y``: (n,) class ids. A cross-entropy.
    """
    return F_.cross_entropy(logits, y)


def contrastive_s2f(emb: torch.Tensor, att: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Semantics -> feature: each class present in the batch against the batch's features.

    ``emb``: (n, d_att) FEM embeddings; ``att``: (n_cls, d_att) all class vectors; ``y``: (n,).
    For class c with positives P(c) = {j : y_j = c}:
    ``L_c = -1/|P(c)| sum_{p in P(c)} log softmax_j(cos(a_c, e_j) / tau)_p``, averaged over c
    (:func:`semantics_to_features` on the cosine scores). With one feature per class this is the
    cross-entropy of the transposed score matrix.
    """
    return semantics_to_features(cosine_logits(emb, att, temperature), y)


def semantics_to_features(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Semantics -> feature over any score matrix: each class present in the batch against the
    batch's rows (the FEM's cosine scores, :func:`contrastive_s2f`, or CE-GZSL's comparator's).

    ``logits``: (n, n_cls) scores already divided by their temperature (CE-GZSL's comparator
    scores, say); ``y``: (n,) class ids. ``L_c = -1/|P(c)| sum_{p in P(c)} log softmax_j(logits[j, c])_p``,
    averaged over the classes present. Every class is scored and the absent ones are masked out
    of the mean, so all shapes are fixed by the batch size: no ``unique``, no host
    synchronisation, graph-capturable.
    """
    classes = torch.arange(logits.shape[1], device=y.device)
    pos = (y[None, :] == classes[:, None]).to(logits.dtype)  # (n_cls, n)
    log_p = logits.T.log_softmax(dim=1)  # (n_cls, n): each class over the batch
    count = pos.sum(1)
    per_class = -(log_p * pos).sum(1) / count.clamp_min(1.0)
    present = (count > 0).to(logits.dtype)
    return (per_class * present).sum() / present.sum()


def supervised_contrastive(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """CE-GZSL's instance-level loss: the supervised contrastive loss (Khosla et al., 2020) over
    the unit-norm projections ``z``: (n, d) of classes ``y``: (n,).

    Anchor i is compared with every other row j (itself left out of the softmax) by
    ``z_i . z_j / tau``; its positives P(i) are the other rows of its class, and
    ``L_i = -1/|P(i)| sum_{p in P(i)} log softmax_{j != i}(z_i . z_j / tau)_p``.
    The loss is the mean of L_i over the anchors that have a positive (a row alone with its
    class in the batch has nothing to be pulled to, and is left out, as in CE-GZSL's
    ``SupConLoss_clear``); 0 if no anchor has one. Fixed shapes, no host sync.
    """
    n = z.shape[0]
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    log_p = (z @ z.T / temperature).masked_fill(self_pair, float("-inf")).log_softmax(dim=1)  # (n, n)
    pos = (y[:, None] == y[None, :]) & ~self_pair
    count = pos.sum(1).to(z.dtype)  # (n,) positives of each anchor
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    per_anchor = -torch.where(pos, log_p, zero).sum(1) / count.clamp_min(1.0)
    has_pos = (count > 0).to(z.dtype)
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp_min(1.0)


def class_contrastive(scores: torch.Tensor, y_idx: torch.Tensor, temperature: float) -> torch.Tensor:
    """CE-GZSL's class-level loss: each embedding's comparator scores against every seen class,
    divided by ``temperature``, its own class the positive: a cross-entropy.

    ``scores``: (n, n_seen), :meth:`bsegn.nets.Comparator.scores`; ``y_idx``: (n,) positions in
    the seen classes.
    """
    return F_.cross_entropy(scores / temperature, y_idx)


def domain_log_mass(logits: torch.Tensor, unseen_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log of the softmax mass on seen classes and on unseen classes, each (n,)."""
    total = logits.logsumexp(dim=1)
    seen = logits.masked_fill(unseen_mask, float("-inf")).logsumexp(dim=1)
    unseen = logits.masked_fill(~unseen_mask, float("-inf")).logsumexp(dim=1)
    return seen - total, unseen - total


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` where ``mask`` holds, and whether any does (both 0-d, no host sync)."""
    n = mask.sum().to(values.dtype)
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / n.clamp_min(1.0), (n > 0).to(values.dtype)


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
    seen_term, has_seen = _masked_mean(-log_s, ~is_unseen)
    unseen_term, has_unseen = _masked_mean(-log_u, is_unseen)
    return (seen_term * has_seen + unseen_term * has_unseen) / (has_seen + has_unseen)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dims, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i ||pred_i - target_i||^2``: the VAE and the cycle-consistency loss."""
    return (pred - target).pow(2).sum(1).mean()


def bce_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i sum_j BCE(pred_ij, target_ij)``: TF-VAEGAN's VAE term (``vae_loss: bce``), for
    ``pred`` and ``target`` in [0, 1]; (n, d_feat) each.

    A NaN in ``pred`` (a decoder whose weights diverged) gives a NaN loss, which the epoch's
    finiteness check reports as a divergence naming 'vae': PyTorch's BCE itself rejects NaN, on
    CUDA with a device-side assertion that kills the process (f-VAEGAN on SYN_SUN, 2026-12-04)."""
    bad = pred.isnan()
    elementwise = F_.binary_cross_entropy(pred.masked_fill(bad, 0.5), target, reduction="none")
    return elementwise.masked_fill(bad, float("nan")).sum(1).mean()


def weighted_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i sum_j |d_ij|^3 / ||d_i||`` for ``d = pred - target``: TF-VAEGAN's decoder loss
    (``cycle_loss: weighted_l1``), an L1 whose terms are weighted by ``d_ij^2 / ||d_i||``, so the
    largest errors of a sample dominate; (n, d_att) each."""
    d = pred - target
    return (d.pow(2) / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * d.abs()).sum(1).mean()


def cycle_reconstruction(name: str):
    """The decoder's and the cycle term's loss named by ``train.cycle_loss``."""
    return {"mse": reconstruction_loss, "weighted_l1": weighted_l1_loss}[name]


def vae_reconstruction(name: str):
    """The VAE's reconstruction term named by ``train.vae_loss``."""
    return {"mse": reconstruction_loss, "bce": bce_reconstruction_loss}[name]
