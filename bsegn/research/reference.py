"""The straightforward training loop that :mod:`bsegn.trainer`'s fast path replaced.

Kept, frozen, for two uses: :mod:`bsegn.research.bench` times it beside the fast trainer in the same
run (the ratio the speed target is stated in), and ``tests/test_fast_trainer.py`` checks that
both compute the same losses. It is the loop as it was: every network call its own pass
(real, fake and interpolated features through the critic one after another; seen and unseen
fakes from separate generator calls), PyTorch's default Adam, and every loss read back to
the host after every iteration. The decoder step never changed and is shared (it is
imported from the trainer), as are the networks, the loss functions and the random
draws (same order, same per-run generator) with the fast trainer, so on the CPU the two give
the same losses to float tolerance. Options added since (``encoded_noise``, ``gp_adaptive``,
``vae_loss``, ``feedback``, ``embed``) are added here too, in the same one-call-at-a-time style, so the
tests cover them. Do not use it for real runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_

from .. import losses
from ..config import TrainConfig
from ..data import Benchmark
from ..model import GenerativeModel
from ..trainer import (EpochHook, TrainState, _finish, _step, _step_generator, adapt_gp_weight, decoder_step,
                      embed_critic_terms, embed_terms, fem_loss, setup)


def critic_step(s: TrainState) -> dict[str, torch.Tensor]:
    xb, yb = s.batch()
    a = s.att[yb]
    fb = s.critic_fake(xb, yb)
    wdist = s.D(xb, a).mean() - s.D(fb, a).mean()
    alpha = torch.rand(xb.shape[0], 1, device=xb.device, generator=s.gen)
    x_hat = (alpha * xb + (1 - alpha) * fb).requires_grad_(True)
    grad, = torch.autograd.grad(s.D(x_hat, a).sum(), x_hat, create_graph=True)
    gp = ((grad.norm(2, dim=1) - 1) ** 2).mean()
    loss = -wdist + s.gp_weight * gp
    logs = {"wasserstein": wdist, "gp": gp.detach()}
    if s.cfg.embed:
        loss, embed_logs = embed_critic_terms(s, loss, xb, yb, fb)
        logs.update(embed_logs)
    _step(s.opt_d, loss)
    return logs


def fem_step(s: TrainState) -> dict[str, torch.Tensor]:
    xb, yb = s.batch()
    ub = s.unseen_batch()
    with torch.no_grad():
        feats, labels = [xb, s.fake(ub)], [yb, ub]
        if s.cfg.fem_fake_seen:
            feats.append(s.fake(yb))
            labels.append(yb)
    loss = fem_loss(s, torch.cat(feats), torch.cat(labels), for_generator=False)
    _step(s.opt_f, loss)
    return {"fem": loss}


def generator_step(s: TrainState) -> dict[str, torch.Tensor]:
    cfg = s.cfg
    xb, yb = s.batch()
    if not cfg.encoded_noise:
        fs = s.fake(yb)
    if s.E is not None:
        z, mu, logvar = s.encoder_noise(xb, yb)
        recon = s.model.features(z, s.att[yb])
        if cfg.encoded_noise:
            fs = recon
    loss = -s.D(fs, s.att[yb]).mean()
    logs = {"g_adv": loss}
    if s.E is not None:
        logs["vae"] = losses.vae_reconstruction(cfg.vae_loss)(recon, xb) + losses.kl_divergence(mu, logvar)
        loss = loss + cfg.vae_weight * logs["vae"]
    if s.clf is not None:
        logs["g_cls"] = F_.cross_entropy(s.clf(fs), s.seen_index[yb])
        loss = loss + cfg.cls_weight * logs["g_cls"]
    if cfg.fem or (cfg.cycle and cfg.cycle_unseen) or (cfg.embed and cfg.embed_unseen):
        ub = s.unseen_batch()
        fu = s.fake(ub)
    if cfg.cycle:
        R = s.model.decoder
        rec = losses.cycle_reconstruction(cfg.cycle_loss)
        if cfg.cycle_unseen:
            logs["g_cycle"] = 0.5 * (rec(R(fs)[0], s.att[yb]) + rec(R(fu)[0], s.att[ub]))
        else:
            logs["g_cycle"] = rec(R(fs)[0], s.att[yb])
        loss = loss + cfg.cycle_weight * logs["g_cycle"]
    if cfg.fem:
        logs["g_fem"] = fem_loss(s, torch.cat([fs, fu]), torch.cat([yb, ub]), for_generator=True)
        loss = loss + cfg.fem_weight * logs["g_fem"]
    if cfg.embed:
        fakes, fake_y = (torch.cat([fs, fu]), torch.cat([yb, ub])) if cfg.embed_unseen else (fs, yb)
        h_fake, z_fake = s.model.embedding(fakes)
        with torch.no_grad():
            z_real = s.model.embedding(xb)[1]
        terms = embed_terms(s, h_fake, fake_y, torch.cat([z_fake, z_real]), torch.cat([fake_y, yb]),
                            for_generator=True)
        logs.update({f"g_embed_{k}": v for k, v in terms.items()})
        loss = loss + cfg.embed_ins_weight * terms["ins"] + cfg.embed_cls_weight * terms["cls"]
        if "balance" in terms:
            loss = loss + cfg.embed_cls_weight * cfg.embed_balance_weight * terms["balance"]
    _step_generator(s, loss)
    return logs


def reference_train(bench: Benchmark, cfg: TrainConfig, device: torch.device,
                    on_epoch: EpochHook | None = None) -> tuple[GenerativeModel, list[dict]]:
    """:func:`bsegn.trainer.train`, the slow way; the caller seeds the RNGs beforehand."""
    s = setup(bench, cfg, device, fast=False)
    iters = math.ceil(len(s.x) / cfg.batch_size)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        sums: dict[str, float] = {}
        for _ in range(iters):
            logs, gps = {}, []
            for _ in range(cfg.critic_iters):
                step = critic_step(s)
                gps.append(step.pop("gp"))
                logs.update(step)
            if cfg.gp_adaptive:
                adapt_gp_weight(s, torch.stack(gps).mean())
                logs["gp_weight"] = s.gp_weight
            for _ in range(cfg.decoder_steps):
                logs.update(decoder_step(s))
            if cfg.fem:
                logs.update(fem_step(s))
            logs.update(generator_step(s))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        history.append({"epoch": epoch, **{k: round(v / iters, 6) for k, v in sorted(sums.items())}})
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return _finish(s), history
