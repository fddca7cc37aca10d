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
            torch.save(payload, tmp)

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


def train(bench: Benchmark, cfg: TrainConfig, device: torch.device, label: str = "train") -> tuple[GenerativeModel, list[dict]]:
    """Train on ``bench``'s seen classes; return the model and per-epoch mean losses.

    The caller seeds the RNGs (:func:`bsegn.runtime.seed_everything`) beforehand.
    """
    x = torch.as_tensor(bench.train_x, device=device)  # (n, d_feat)
    y = torch.as_tensor(bench.train_y, device=device)  # (n,) class ids
    att = torch.as_tensor(bench.att, device=device)  # (n_cls, d_att)
    seen = torch.as_tensor(bench.seen, device=device)
    unseen = torch.as_tensor(bench.unseen, device=device)
    unseen_mask = torch.zeros(len(att), dtype=torch.bool, device=device)
    unseen_mask[unseen] = True
    seen_index = torch.full((len(att),), -1, dtype=torch.long, device=device)
    seen_index[seen] = torch.arange(len(seen), device=device)  # class id -> seen-classifier index

    d_noise = cfg.noise_dim or bench.d_att
    model = build_model(cfg, d_noise, bench.d_att, bench.d_feat)
    G, R, FEM_ = model.generator.to(device), model.decoder.to(device), model.fem
    D = Critic(bench.d_feat, bench.d_att, cfg.hidden).to(device)
    E = Encoder(bench.d_feat, bench.d_att, cfg.hidden, d_noise).to(device) if cfg.vae else None
    opt_g = _adam(list(G.parameters()) + (list(E.parameters()) if E else []), cfg.lr, cfg.beta1)
    opt_d = _adam(D.parameters(), cfg.lr, cfg.beta1)
    opt_r = _adam(R.parameters(), cfg.decoder_lr, cfg.beta1)
    if FEM_ is not None:
        FEM_.to(device)
        opt_f = _adam(FEM_.parameters(), cfg.fem_lr, cfg.beta1)
    clf = pretrain_seen_classifier(x, seen_index[y], len(seen), cfg) if cfg.cls_weight > 0 else None

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(x), (cfg.batch_size,), device=device)
        return x[idx], y[idx]

    def fake(classes: torch.Tensor) -> torch.Tensor:
        return G(torch.randn(len(classes), d_noise, device=device), att[classes])

    def unseen_batch() -> torch.Tensor:
        return unseen[torch.randint(len(unseen), (cfg.batch_size,), device=device)]

    def fem_loss(feats: torch.Tensor, labels: torch.Tensor, for_generator: bool) -> torch.Tensor:
        emb = FEM_(feats)  # (n, d_att)
        logits = cosine_logits(emb, att, cfg.fem_temperature)  # (n, n_cls)
        loss = torch.zeros((), device=device)
        if cfg.fem_f2s:
            loss = loss + losses.contrastive_f2s(logits, labels)
        if cfg.fem_s2f and not for_generator:
            loss = loss + losses.contrastive_s2f(emb, att, labels, cfg.fem_temperature)
        if cfg.fem_balance:
            loss = loss + cfg.balance_weight * losses.balance_loss(logits, unseen_mask, unseen_mask[labels])
        return loss

    iters = math.ceil(len(x) / cfg.batch_size)
    history = []
    progress = Progress(label, cfg.epochs, unit=" epochs")
    for epoch in range(1, cfg.epochs + 1):
        sums: dict[str, float] = {}

        def log(**values: torch.Tensor) -> None:
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / iters

        for _ in range(iters):
            for _ in range(cfg.critic_iters):  # 1. critic
                xb, yb = batch()
                fb = fake(yb).detach()
                wdist = D(xb, att[yb]).mean() - D(fb, att[yb]).mean()
                _step(opt_d, -wdist + cfg.gp_weight * losses.gradient_penalty(D, xb, fb, att[yb]))

            xb, yb = batch()  # 2. cycle branch R on real seen features
            loss_r = losses.reconstruction_loss(R(xb)[0], att[yb])
            _step(opt_r, loss_r)

            if FEM_ is not None:  # 3. FEM on real seen + fake unseen (detached: G untouched)
                ub = unseen_batch()
                with torch.no_grad():
                    fu = fake(ub)
                loss_f = fem_loss(torch.cat([xb, fu]), torch.cat([yb, ub]), for_generator=False)
                _step(opt_f, loss_f)
                log(fem=loss_f)

            xb, yb = batch()  # 4. generator
            fs = fake(yb)
            loss_g = -D(fs, att[yb]).mean()
            log(g_adv=loss_g)
            if E is not None:
                mu, logvar = E(xb, att[yb])
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                loss_vae = losses.reconstruction_loss(G(z, att[yb]), xb) + losses.kl_divergence(mu, logvar)
                loss_g = loss_g + cfg.vae_weight * loss_vae
                log(vae=loss_vae)
            if clf is not None:
                loss_cls = F_.cross_entropy(clf(fs), seen_index[yb])
                loss_g = loss_g + cfg.cls_weight * loss_cls
                log(g_cls=loss_cls)
            if cfg.cycle or FEM_ is not None:
                ub = unseen_batch()
                fu = fake(ub)
            if cfg.cycle:
                loss_cyc = 0.5 * (losses.reconstruction_loss(R(fs)[0], att[yb])
                                  + losses.reconstruction_loss(R(fu)[0], att[ub]))
                loss_g = loss_g + cfg.cycle_weight * loss_cyc
                log(g_cycle=loss_cyc)
            if FEM_ is not None:
                loss_gf = fem_loss(torch.cat([fs, fu]), torch.cat([yb, ub]), for_generator=True)
                loss_g = loss_g + cfg.fem_weight * loss_gf
                log(g_fem=loss_gf)
            _step(opt_g, loss_g)
            log(wasserstein=wdist, decoder=loss_r)

        history.append({"epoch": epoch, **{k: round(v, 6) for k, v in sorted(sums.items())}})
        progress.update(1, info=f"W={sums['wasserstein']:.3f}")
    progress.close()
    for net in (G, R, FEM_):
        if net is not None:
            net.eval()
    return model, history


@torch.no_grad()
def generate(model: GenerativeModel, att: torch.Tensor, classes: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` synthetic features for each class id in ``classes``.

    ``att``: (n_cls, d_att). Returns x: (len(classes) * per_class, d_feat) and y class ids.
    """
    y = classes.repeat_interleave(per_class)
    z = torch.randn(len(y), model.generator.d_noise, device=att.device)
    return model.generator(z, att[y]), y
