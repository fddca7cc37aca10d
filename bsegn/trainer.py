"""Training the generative model: f-CLSWGAN, extended by BSeGN's FEM and cycle branch.

One iteration (docs/METHOD.md, "Training schedule"):

1. ``critic_iters`` critic steps on real seen vs generated seen features (WGAN-GP);
2. one step of the semantic decoder R on real seen features (the cycle branch);
3. if ``fem``: one FEM step on real seen + freshly generated *unseen* features, with the
   bidirectional contrastive and balance losses; the fakes are detached, so G is not moved;
4. one generator step: adversarial loss (+ VAE, classification, cycle and FEM losses);
   only G (and E) are stepped, D, R, F and the seen classifier stay as they are.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F_

from . import losses
from .config import TrainConfig
from .data import Benchmark
from .io import atomic_path
from .nets import FEM, Critic, Encoder, Generator, SemanticDecoder, SoftmaxClassifier, cosine_logits
from .progress import Progress


@dataclass
class GenerativeModel:
    """What the train stage saves: everything later stages need, nothing more."""

    cfg: TrainConfig
    generator: Generator
    decoder: SemanticDecoder  # cycle branch R; always trained (cheap), used by the mFIM
    fem: FEM | None

    def save(self, path: str | Path) -> None:
        payload = {
            "cfg": dataclasses.asdict(self.cfg),
            "dims": {"d_noise": self.generator.d_noise, "d_att": self.decoder.out.out_features,
                     "d_feat": self.decoder.hidden[0].in_features},
            "generator": self.generator.state_dict(),
            "decoder": self.decoder.state_dict(),
            "fem": None if self.fem is None else self.fem.state_dict(),
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # via a handle: torch would embed the (random) temp name
                torch.save(payload, fh)

    @classmethod
    def load(cls, path: str | Path, device: torch.device) -> "GenerativeModel":
        payload = torch.load(path, map_location=device, weights_only=True)
        cfg = TrainConfig(**payload["cfg"])
        model = build_model(cfg, **payload["dims"])
        model.generator.load_state_dict(payload["generator"])
        model.decoder.load_state_dict(payload["decoder"])
        if model.fem is not None:
            model.fem.load_state_dict(payload["fem"])
        for net in (model.generator, model.decoder, model.fem):
            if net is not None:
                net.to(device).eval()
        return model


def build_model(cfg: TrainConfig, d_noise: int, d_att: int, d_feat: int) -> GenerativeModel:
    fem = FEM(d_feat, d_att, cfg.fem_hidden, cfg.fem_temperature) if cfg.fem else None
    return GenerativeModel(cfg, Generator(d_noise, d_att, cfg.hidden, d_feat),
                           SemanticDecoder(d_feat, d_att, cfg.hidden), fem)


def _adam(params, lr: float, beta1: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def pretrain_seen_classifier(x: torch.Tensor, y_idx: torch.Tensor, n_seen: int, cfg: TrainConfig) -> SoftmaxClassifier:
    """The frozen seen-class softmax of f-CLSWGAN; its loss keeps fakes class-discriminative."""
    clf = SoftmaxClassifier(x.shape[1], n_seen).to(x.device)
    opt = _adam(clf.parameters(), 1e-3, 0.5)
    for _ in range(cfg.cls_pretrain_epochs):
        for idx in torch.randperm(len(x), device=x.device).split(cfg.batch_size):
            _step(opt, F_.cross_entropy(clf(x[idx]), y_idx[idx]))
    clf.eval().requires_grad_(False)
    return clf


@dataclass
class TrainState:
    """Networks, optimisers and training tensors shared by the step functions."""

    cfg: TrainConfig
    x: torch.Tensor  # (n, d_feat) real seen training features
    y: torch.Tensor  # (n,) their class ids
    att: torch.Tensor  # (n_cls, d_att) semantics of every class
    unseen: torch.Tensor  # (n_unseen,) unseen class ids
    unseen_mask: torch.Tensor  # (n_cls,) bool
    seen_index: torch.Tensor  # (n_cls,) class id -> seen-classifier output, -1 for unseen
    model: GenerativeModel
    D: Critic
    E: Encoder | None
    clf: SoftmaxClassifier | None  # frozen seen-class classifier (f-CLSWGAN), None if cls_weight = 0
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    opt_r: torch.optim.Optimizer
    opt_f: torch.optim.Optimizer | None

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.x), (self.cfg.batch_size,), device=self.x.device)
        return self.x[idx], self.y[idx]

    def unseen_batch(self) -> torch.Tensor:
        return self.unseen[torch.randint(len(self.unseen), (self.cfg.batch_size,), device=self.x.device)]

    def fake(self, classes: torch.Tensor) -> torch.Tensor:
        G = self.model.generator
        return G(torch.randn(len(classes), G.d_noise, device=self.x.device), self.att[classes])


def setup(bench: Benchmark, cfg: TrainConfig, device: torch.device) -> TrainState:
    """Build networks and optimisers for ``bench`` (pretrains the seen classifier if used)."""
    x = torch.as_tensor(bench.train_x, device=device)
    y = torch.as_tensor(bench.train_y, device=device)
    att = torch.as_tensor(bench.att, device=device)
    seen = torch.as_tensor(bench.seen, device=device)
    unseen = torch.as_tensor(bench.unseen, device=device)
    unseen_mask = torch.zeros(len(att), dtype=torch.bool, device=device)
    unseen_mask[unseen] = True
    seen_index = torch.full((len(att),), -1, dtype=torch.long, device=device)
    seen_index[seen] = torch.arange(len(seen), device=device)

    d_noise = cfg.noise_dim or bench.d_att
    model = build_model(cfg, d_noise, bench.d_att, bench.d_feat)
    for net in (model.generator, model.decoder, model.fem):
        if net is not None:
            net.to(device)
    D = Critic(bench.d_feat, bench.d_att, cfg.hidden).to(device)
    E = Encoder(bench.d_feat, bench.d_att, cfg.hidden, d_noise).to(device) if cfg.vae else None
    g_params = list(model.generator.parameters()) + (list(E.parameters()) if E else [])
    clf = pretrain_seen_classifier(x, seen_index[y], len(seen), cfg) if cfg.cls_weight > 0 else None
    return TrainState(
        cfg, x, y, att, unseen, unseen_mask, seen_index, model, D, E, clf,
        opt_g=_adam(g_params, cfg.lr, cfg.beta1),
        opt_d=_adam(D.parameters(), cfg.lr, cfg.beta1),
        opt_r=_adam(model.decoder.parameters(), cfg.decoder_lr, cfg.beta1),
        opt_f=_adam(model.fem.parameters(), cfg.fem_lr, cfg.beta1) if model.fem is not None else None,
    )


def fem_loss(s: TrainState, feats: torch.Tensor, labels: torch.Tensor, for_generator: bool) -> torch.Tensor:
    """FEM objective on ``feats``: (n, d_feat) of classes ``labels``: (n,).

    The FEM itself gets both contrastive directions and the balance loss; the generator
    gets feature->semantics and balance (semantics->feature compares a class vector with
    the *batch*, which says nothing about one generated feature's class).
    """
    cfg = s.cfg
    emb = s.model.fem(feats)  # (n, d_att)
    logits = cosine_logits(emb, s.att, cfg.fem_temperature)  # (n, n_cls)
    loss = torch.zeros((), device=feats.device)
    if cfg.fem_f2s:
        loss = loss + losses.contrastive_f2s(logits, labels)
    if cfg.fem_s2f and not for_generator:
        loss = loss + losses.contrastive_s2f(emb, s.att, labels, cfg.fem_temperature)
    if cfg.fem_balance:
        loss = loss + cfg.balance_weight * losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels])
    return loss


def critic_step(s: TrainState) -> dict[str, torch.Tensor]:
    """WGAN-GP critic update on real vs generated seen features; moves only D."""
    xb, yb = s.batch()
    a = s.att[yb]
    fb = s.fake(yb).detach()
    wdist = s.D(xb, a).mean() - s.D(fb, a).mean()
    _step(s.opt_d, -wdist + s.cfg.gp_weight * losses.gradient_penalty(s.D, xb, fb, a))
    return {"wasserstein": wdist}


def decoder_step(s: TrainState) -> dict[str, torch.Tensor]:
    """Cycle branch R: regress class semantics from features; moves only R.

    With ``decoder_fakes`` R also learns from freshly generated unseen features, so the
    mFIM levels it provides are not fitted to the seen classes alone.
    """
    xb, yb = s.batch()
    if s.cfg.decoder_fakes:
        ub = s.unseen_batch()
        with torch.no_grad():
            xb, yb = torch.cat([xb, s.fake(ub)]), torch.cat([yb, ub])
    loss = losses.reconstruction_loss(s.model.decoder(xb)[0], s.att[yb])
    _step(s.opt_r, loss)
    return {"decoder": loss}


def fem_step(s: TrainState) -> dict[str, torch.Tensor]:
    """FEM on real seen + freshly generated unseen features; the fakes are made without
    gradient, so only F moves.

    With ``fem_fake_seen`` the batch also holds generated *seen* features: otherwise
    "real" and "seen" coincide in the FEM's data, the FEM can tell the domains apart by
    how real a feature looks, and its loss then teaches G to make unseen fakes look
    *less* real (docs/METHOD.md, "Why fake seen features in the FEM batch").
    """
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
    """Generator (and encoder) update; D, R, F and the seen classifier are not stepped."""
    cfg, G = s.cfg, s.model.generator
    xb, yb = s.batch()
    fs = s.fake(yb)  # (batch, d_feat) fake seen
    loss = -s.D(fs, s.att[yb]).mean()
    logs = {"g_adv": loss}
    if s.E is not None:
        mu, logvar = s.E(xb, s.att[yb])
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logs["vae"] = losses.reconstruction_loss(G(z, s.att[yb]), xb) + losses.kl_divergence(mu, logvar)
        loss = loss + cfg.vae_weight * logs["vae"]
    if s.clf is not None:
        logs["g_cls"] = F_.cross_entropy(s.clf(fs), s.seen_index[yb])
        loss = loss + cfg.cls_weight * logs["g_cls"]
    if cfg.cycle or cfg.fem:
        ub = s.unseen_batch()
        fu = s.fake(ub)  # (batch, d_feat) fake unseen
    if cfg.cycle:
        R = s.model.decoder
        logs["g_cycle"] = 0.5 * (losses.reconstruction_loss(R(fs)[0], s.att[yb])
                                 + losses.reconstruction_loss(R(fu)[0], s.att[ub]))
        loss = loss + cfg.cycle_weight * logs["g_cycle"]
    if cfg.fem:
        logs["g_fem"] = fem_loss(s, torch.cat([fs, fu]), torch.cat([yb, ub]), for_generator=True)
        loss = loss + cfg.fem_weight * logs["g_fem"]
    _step(s.opt_g, loss)
    return logs


def train(bench: Benchmark, cfg: TrainConfig, device: torch.device, label: str = "train") -> tuple[GenerativeModel, list[dict]]:
    """Train on ``bench``'s seen classes; return the model and per-epoch mean losses.

    The caller seeds the RNGs (:func:`bsegn.runtime.seed_everything`) beforehand.
    """
    s = setup(bench, cfg, device)
    iters = math.ceil(len(s.x) / cfg.batch_size)  # an epoch = one pass over the real features
    history = []
    progress = Progress(label, cfg.epochs, unit=" epochs")
    for epoch in range(1, cfg.epochs + 1):
        sums: dict[str, float] = {}
        for _ in range(iters):
            logs = {}
            for _ in range(cfg.critic_iters):
                logs.update(critic_step(s))
            logs.update(decoder_step(s))
            if cfg.fem:
                logs.update(fem_step(s))
            logs.update(generator_step(s))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / iters
        history.append({"epoch": epoch, **{k: round(v, 6) for k, v in sorted(sums.items())}})
        progress.update(1, info=f"W={sums['wasserstein']:.3f}")
    progress.close()
    for net in (s.model.generator, s.model.decoder, s.model.fem):
        if net is not None:
            net.eval()
    return s.model, history


@torch.no_grad()
def generate(model: GenerativeModel, att: torch.Tensor, classes: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` synthetic features for each class id in ``classes``.

    ``att``: (n_cls, d_att). Returns x: (len(classes) * per_class, d_feat) and y class ids.
    """
    y = classes.repeat_interleave(per_class)
    z = torch.randn(len(y), model.generator.d_noise, device=att.device)
    return model.generator(z, att[y]), y
