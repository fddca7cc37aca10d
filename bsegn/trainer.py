"""Training the generative model: f-CLSWGAN, extended by BSeGN's FEM and cycle branch.

One iteration (docs/METHOD.md, "Training schedule"):

1. ``critic_iters`` critic steps on real seen vs generated seen features (WGAN-GP);
2. ``decoder_steps`` steps (1 unless set) of the semantic decoder R on real seen features
   (the cycle branch), each on a fresh batch;
3. if ``fem``: one FEM step on real seen + freshly generated *unseen* features, with the
   bidirectional contrastive and balance losses; the fakes are detached, so G is not moved;
4. one generator step: adversarial loss (+ VAE, classification, cycle, FEM and CE-GZSL
   losses); only G (and E, and the feedback module F_b) are stepped; D, R, F, the embedding
   net, its comparator and the seen classifier stay.

With ``embed`` (CE-GZSL), the critic steps also train CE-GZSL's embedding net and its
comparator on the real batch: the critic's loss gains the (unweighted) instance- and
class-level contrastive losses, and the critic's Adam steps them with D, as CE-GZSL's code does.
With ``embed_unseen`` (BSeGN's FEM on that embedding) G's seen and unseen fakes join that batch
and every class is scored, with ``embed_s2f`` and ``embed_balance_weight`` adding the FEM's
semantics -> feature and balance losses (:func:`embed_terms`).

Speed (docs/METHOD.md, "Fast training"): the data live on the device, every shape is
fixed by the batch size, the losses are summed on the device (one host sync per epoch),
Adam is fused on CUDA, and on CUDA one whole iteration is captured as a CUDA graph and
replayed. :func:`train_many` trains several seeds at once, each on its own CUDA stream.
:mod:`bsegn.research.reference` keeps the straightforward loop (eager, a pass per network call, a
host sync per step) that the benchmark (:mod:`bsegn.research.bench`) and the tests compare against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F_

from . import checkpoint, losses
from .config import TrainConfig
from .data import Benchmark
from .errors import PipelineError
from .model import GenerativeModel, build_model, run_generate
from .pipeline import RunConfig, Validation, validation_syn_num
from .nets import Comparator, Critic, Encoder, SoftmaxClassifier, cosine_logits
from .progress import Progress
from .runtime import seed_everything


def _adam(params, lr: float, beta1: float, fast: bool = True) -> torch.optim.Adam:
    """Adam over ``params`` (tensors, or param groups that may set their own betas)."""
    params = list(params)
    first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
    fast = fast and first.is_cuda  # pragma: no mutate (CUDA only)
    # CUDA: one fused kernel per step, its state on the device so the step can be graph-captured;
    # CPU (and the reference loop): PyTorch's default Adam, which keeps CPU runs as they were
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999),
                            fused=fast or None, capturable=fast)  # pragma: no mutate (CUDA only)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def pretrain_seen_classifier(x: torch.Tensor, y_idx: torch.Tensor, n_seen: int, cfg: TrainConfig,
                             gen: torch.Generator | None = None) -> SoftmaxClassifier:
    """The frozen seen-class softmax of f-CLSWGAN; its loss keeps fakes class-discriminative."""
    clf = SoftmaxClassifier(x.shape[1], n_seen).to(x.device)
    opt = _adam(clf.parameters(), cfg.seen_classifier_lr, cfg.seen_classifier_beta1)
    for _ in range(cfg.cls_pretrain_epochs):
        for idx in torch.randperm(len(x), device=x.device, generator=gen).split(cfg.batch_size):
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
    opt_fb: torch.optim.Optimizer | None  # the feedback module's, stepped with the generator
    gen: torch.Generator  # this run's random stream for batches, noise and interpolates
    gp_weight: torch.Tensor  # 0-d, on the device: cfg.gp_weight, moved by gp_adaptive
    seen: torch.Tensor | None = None  # (n_seen,) seen class ids, in seen_index order
    comparator: Comparator | None = None  # CE-GZSL's F(h, a) (train.embed): trained with D, and like D not saved

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.x), (self.cfg.batch_size,), device=self.x.device, generator=self.gen)
        return self.x[idx], self.y[idx]

    def unseen_batch(self) -> torch.Tensor:
        idx = torch.randint(len(self.unseen), (self.cfg.batch_size,), device=self.x.device, generator=self.gen)
        return self.unseen[idx]

    def noise(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.x.device, generator=self.gen)

    def fake(self, classes: torch.Tensor) -> torch.Tensor:
        return self.model.features(self.noise(len(classes), self.model.generator.d_noise), self.att[classes])

    def encoder_noise(self, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """z ~ E(x, a): the reparameterised draw, and the (mu, logvar) it came from."""
        mu, logvar = self.E(x, self.att[classes])
        return mu + self.noise(*mu.shape) * (0.5 * logvar).exp(), mu, logvar

    def critic_fake(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """The fakes the critic sees beside the real batch ``xb``: from prior noise, or with
        ``encoded_noise`` the VAE reconstructions of ``xb``; no gradient."""
        with torch.no_grad():
            if self.cfg.encoded_noise:
                return self.model.features(self.encoder_noise(xb, yb)[0], self.att[yb])
            return self.fake(yb)


def setup(bench: Benchmark, cfg: TrainConfig, device: torch.device, fast: bool = True) -> TrainState:
    """Build networks and optimisers for ``bench`` (pretrains the seen classifier if used).

    Initial weights come from torch's global RNG (seeded by the caller); the run's own
    generator is seeded from it too, so one global seed fixes everything. A per-run
    generator keeps seeds trained side by side (:func:`train_many`) independent.
    ``fast``: fused, capturable Adam on CUDA (off for the reference loop).
    """
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
    for net in model.networks():
        net.to(device)
    D = Critic(bench.d_feat, bench.d_att, cfg.hidden).to(device)
    E = Encoder(bench.d_feat, bench.d_att, cfg.hidden, d_noise, cfg.encoder_layers).to(device) if cfg.vae else None
    # CE-GZSL's comparator: after D and E, so they start as without it
    comparator = Comparator(cfg.embed_dim, bench.d_att, cfg.embed_hidden).to(device) if cfg.embed else None
    g_params = [{"params": list(model.generator.parameters())}]
    if E is not None:  # own: TF-VAEGAN's separate Adam for E, PyTorch's default beta1; same step
        betas = (0.9, 0.999) if cfg.encoder_optimizer == "own" else (cfg.beta1, 0.999)
        g_params.append({"params": list(E.parameters()), "betas": betas})
    gen = torch.Generator(device).manual_seed(int(torch.randint(2 ** 62, ())))
    clf = pretrain_seen_classifier(x, seen_index[y], len(seen), cfg, gen) if cfg.cls_weight > 0 else None
    d_params = list(D.parameters())
    if comparator is not None:  # CE-GZSL steps its embedding net and comparator with the critic's Adam
        d_params += [*model.embedding.parameters(), *comparator.parameters()]
    return TrainState(
        cfg, x, y, att, unseen, unseen_mask, seen_index, model, D, E, clf,
        opt_g=_adam(g_params, cfg.lr, cfg.beta1, fast),
        opt_d=_adam(d_params, cfg.lr, cfg.beta1, fast),
        opt_r=_adam(model.decoder.parameters(), cfg.decoder_lr, cfg.beta1, fast),
        opt_f=_adam(model.fem.parameters(), cfg.fem_lr, cfg.beta1, fast) if model.fem is not None else None,
        opt_fb=_adam(model.feedback.parameters(), cfg.feedback_lr, cfg.beta1, fast) if model.feedback else None,
        gen=gen,
        gp_weight=torch.tensor(cfg.gp_weight, device=device),
        seen=seen,
        comparator=comparator,
    )


def fem_loss(s: TrainState, feats: torch.Tensor, labels: torch.Tensor, for_generator: bool) -> torch.Tensor:
    """FEM objective on ``feats``: (n, d_feat) of classes ``labels``: (n,).

    The FEM itself gets both contrastive directions and the balance loss; the generator
    gets feature->semantics and balance (semantics->feature compares a class vector with
    the *batch*, which says nothing about one generated feature's class). With
    ``fem_ins_weight`` both also get CE-GZSL's instance-level (supervised) contrast among the
    unit-norm embeddings, same-class rows the positives.
    """
    cfg = s.cfg
    emb = s.model.fem(feats)  # (n, d_emb): d_att, fem_dim (embedding) or fem_out_dim (contrastive)
    protos = s.model.fem.prototypes(s.att)  # (n_cls, d_emb)
    logits = cosine_logits(emb, protos, cfg.fem_temperature)  # (n, n_cls)
    loss = torch.zeros((), device=feats.device)
    if cfg.fem_f2s:
        loss = loss + losses.contrastive_f2s(logits, labels)
    if cfg.fem_s2f and not for_generator:
        loss = loss + losses.contrastive_s2f(emb, protos, labels, cfg.fem_temperature)
    if cfg.fem_balance:
        loss = loss + cfg.balance_weight * losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels])
    if cfg.fem_ins_weight > 0:
        z = F_.normalize(emb, dim=1)
        loss = loss + cfg.fem_ins_weight * losses.supervised_contrastive(z, labels, cfg.fem_temperature)
    return loss


def embed_terms(s: TrainState, h: torch.Tensor, h_labels: torch.Tensor, z: torch.Tensor,
                z_labels: torch.Tensor, for_generator: bool = False) -> dict[str, torch.Tensor]:
    """CE-GZSL's two losses: ``ins``, instance-level over the projections ``z`` (of classes
    ``z_labels``), and ``cls``, class-level over the embeddings ``h`` (of seen classes
    ``h_labels``), each scored by the comparator against every seen class's semantic vector.

    With ``embed_unseen`` (BSeGN's FEM on this embedding) ``h`` may hold unseen fakes and is
    scored against every class; ``embed_s2f`` adds ``s2f``, the semantics -> feature direction
    (not for the generator: it compares a class with the batch, which says nothing about one
    fake's class), and ``embed_balance_weight`` ``balance``, both over the same scores.
    """
    cfg = s.cfg
    terms = {"ins": losses.supervised_contrastive(z, z_labels, cfg.embed_ins_temperature)}
    if not cfg.embed_unseen:
        scores = s.comparator.scores(h, s.att[s.seen])  # (n, n_seen)
        terms["cls"] = losses.class_contrastive(scores, s.seen_index[h_labels], cfg.embed_cls_temperature)
        return terms
    logits = s.comparator.scores(h, s.att) / cfg.embed_cls_temperature  # (n, n_cls): every class
    terms["cls"] = F_.cross_entropy(logits, h_labels)
    if cfg.embed_s2f and not for_generator:
        terms["s2f"] = losses.semantics_to_features(logits, h_labels)
    if cfg.embed_balance_weight > 0:
        terms["balance"] = losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[h_labels])
    return terms


def embed_critic_terms(s: TrainState, loss: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
                       fb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's ``loss`` plus the embedding net's and comparator's, and their terms to log.

    CE-GZSL: the real batch ``xb``: (B, d_feat) alone, its losses unweighted. With
    ``embed_unseen`` G's fakes join: the critic's seen fakes ``fb`` and as many fresh unseen
    ones, so that real and fake do not coincide with seen and unseen (the reason for
    ``fem_fake_seen``), and the comparator learns every class.
    """
    feats, labels = xb, yb
    if s.cfg.embed_unseen:
        ub = s.unseen_batch()
        with torch.no_grad():
            fu = s.fake(ub)
        feats, labels = torch.cat([xb, fb, fu]), torch.cat([yb, yb, ub])
    h, z = s.model.embedding(feats)
    terms = embed_terms(s, h, labels, z, labels)
    loss = loss + terms["ins"] + terms["cls"]
    if "s2f" in terms:
        loss = loss + terms["s2f"]
    if "balance" in terms:
        loss = loss + s.cfg.embed_balance_weight * terms["balance"]
    return loss, {f"embed_{k}": v for k, v in terms.items()}


def critic_step(s: TrainState) -> dict[str, torch.Tensor]:
    """WGAN-GP critic update on real vs generated seen features; moves only D (and with
    ``embed`` CE-GZSL's embedding net and comparator, on their losses over the real batch).

    Real, generated and interpolated features go through D as one batch: one read of
    D's weights instead of three (the rows do not interact, so the values are the same).
    """
    xb, yb = s.batch()
    fb = s.critic_fake(xb, yb)
    wdist, gp = losses.wgan_critic_terms(s.D, xb, fb, s.att[yb], s.gen)
    loss = -wdist + s.gp_weight * gp
    logs = {"wasserstein": wdist, "gp": gp.detach()}
    if s.cfg.embed:
        loss, embed_logs = embed_critic_terms(s, loss, xb, yb, fb)
        logs.update(embed_logs)
    _step(s.opt_d, loss)
    return logs


def adapt_gp_weight(s: TrainState, gp_mean: torch.Tensor) -> None:
    """TF-VAEGAN's gradient-penalty schedule, applied after each iteration's critic steps:
    the weight grows by 1.1 when their mean penalty ``gp_mean`` (0-d) is above 1.05 and
    shrinks by 1.1 below 1.001. On the device, in place: no host sync, and a CUDA graph
    replays it."""
    factor = torch.where(gp_mean > 1.05, 1.1, torch.where(gp_mean < 1.001, 1 / 1.1, 1.0))
    s.gp_weight.mul_(factor)


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
    loss = losses.cycle_reconstruction(s.cfg.cycle_loss)(s.model.decoder(xb)[0], s.att[yb])
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
    z = [s.noise(len(ub), s.model.generator.d_noise)]
    classes = [ub]
    if s.cfg.fem_fake_seen:
        z.append(s.noise(len(yb), s.model.generator.d_noise))
        classes.append(yb)
    with torch.no_grad():  # all fakes in one pass of G
        fakes = s.model.features(torch.cat(z), s.att[torch.cat(classes)])
    loss = fem_loss(s, torch.cat([xb, fakes]), torch.cat([yb, *classes]), for_generator=False)
    _step(s.opt_f, loss)
    return {"fem": loss}


def generator_step(s: TrainState) -> dict[str, torch.Tensor]:
    """Generator (and encoder, and F_b) update; D, R, F, CE-GZSL's embedding net and comparator
    and the seen classifier are not stepped.

    The fake seen features, the VAE reconstructions and the fake unseen features come from
    one pass of G, and the cycle loss sends seen and (with ``cycle_unseen``) unseen fakes
    through R together (the random draws keep the order of the step-by-step version,
    :mod:`bsegn.research.reference`). With
    ``encoded_noise`` the VAE reconstructions *are* the fake seen features (adversarial,
    classification, cycle and FEM terms), as in TF-VAEGAN.
    """
    cfg, G = s.cfg, s.model.generator
    B = cfg.batch_size
    xb, yb = s.batch()
    z, classes = [], []
    if not cfg.encoded_noise:
        z.append(s.noise(B, G.d_noise))  # fake seen
        classes.append(yb)
    if s.E is not None:
        z_vae, mu, logvar = s.encoder_noise(xb, yb)
        z.append(z_vae)  # VAE reconstructions of xb
        classes.append(yb)
    # G makes unseen fakes for these terms alone
    unseen = cfg.fem or (cfg.cycle and cfg.cycle_unseen) or (cfg.embed and cfg.embed_unseen)
    if unseen:
        ub = s.unseen_batch()
        z.append(s.noise(B, G.d_noise))  # fake unseen
        classes.append(ub)
    out = s.model.features(torch.cat(z), s.att[torch.cat(classes)]).split(B)  # (batch, d_feat) per group
    fs = out[0]
    loss = -s.D(fs, s.att[yb]).mean()
    logs = {"g_adv": loss}
    if s.E is not None:
        recon = out[0 if cfg.encoded_noise else 1]  # (batch, d_feat) reconstructions of xb
        logs["vae"] = losses.vae_reconstruction(cfg.vae_loss)(recon, xb) + losses.kl_divergence(mu, logvar)
        loss = loss + cfg.vae_weight * logs["vae"]
    if s.clf is not None:
        logs["g_cls"] = F_.cross_entropy(s.clf(fs), s.seen_index[yb])
        loss = loss + cfg.cls_weight * logs["g_cls"]
    if unseen:
        fu = out[-1]
    if cfg.cycle:
        rec = losses.cycle_reconstruction(cfg.cycle_loss)
        if cfg.cycle_unseen:
            a_hat = s.model.decoder(torch.cat([fs, fu]))[0].split(B)
            logs["g_cycle"] = 0.5 * (rec(a_hat[0], s.att[yb]) + rec(a_hat[1], s.att[ub]))
        else:  # TF-VAEGAN's code: the seen fakes alone
            logs["g_cycle"] = rec(s.model.decoder(fs)[0], s.att[yb])
        loss = loss + cfg.cycle_weight * logs["g_cycle"]
    if cfg.fem:
        logs["g_fem"] = fem_loss(s, torch.cat([fs, fu]), torch.cat([yb, ub]), for_generator=True)
        loss = loss + cfg.fem_weight * logs["g_fem"]
    if cfg.embed:  # the fakes and the real batch through the embedding net in one pass
        fakes, fake_y = (torch.cat([fs, fu]), torch.cat([yb, ub])) if cfg.embed_unseen else (fs, yb)
        n = len(fakes)
        h, z = s.model.embedding(torch.cat([fakes, xb]))
        z = torch.cat([z[:n], z[n:].detach()])  # the real projections are the fakes' fixed contrast
        terms = embed_terms(s, h[:n], fake_y, z, torch.cat([fake_y, yb]), for_generator=True)
        logs.update({f"g_embed_{k}": v for k, v in terms.items()})
        loss = loss + cfg.embed_ins_weight * terms["ins"] + cfg.embed_cls_weight * terms["cls"]
        if "balance" in terms:
            loss = loss + cfg.embed_cls_weight * cfg.embed_balance_weight * terms["balance"]
    _step_generator(s, loss)
    return logs


def _step_generator(s: TrainState, loss: torch.Tensor) -> None:
    """G (and E) take ``loss``'s step; the feedback module, when there is one, its own; with
    ``decoder_cycle_step`` R too, on the gradient the cycle term sends it."""
    # their gradients must hold this loss's alone (R's still holds its last decoder step's)
    others = [opt for opt in (s.opt_fb, s.opt_r if s.cfg.decoder_cycle_step else None) if opt is not None]
    for opt in others:
        opt.zero_grad(set_to_none=True)
    _step(s.opt_g, loss)
    for opt in others:
        opt.step()


def iteration(s: TrainState) -> dict[str, torch.Tensor]:
    """One training iteration: critic steps, decoder steps, FEM, generator. Returns its losses
    (the last critic and decoder steps'), as 0-d device tensors; with
    ``gp_adaptive`` also the penalty weight after this iteration's adaptation."""
    logs, gps = {}, []
    for _ in range(s.cfg.critic_iters):
        step = critic_step(s)
        gps.append(step.pop("gp"))
        logs.update(step)
    if s.cfg.gp_adaptive:
        adapt_gp_weight(s, torch.stack(gps).mean())
        logs["gp_weight"] = s.gp_weight
    for _ in range(s.cfg.decoder_steps):  # the last step's loss is logged, like the critic's
        logs.update(decoder_step(s))
    if s.cfg.fem:
        logs.update(fem_step(s))
    logs.update(generator_step(s))
    return logs


EpochHook = Callable[[int, dict], None]  # on_epoch(epoch, history row), e.g. for timing


class TrainingDiverged(PipelineError):
    """A loss became non-finite or absurdly large: the run is stopped instead of saved."""


DIVERGED = 1e8  # an epoch-mean loss beyond this is a run gone wrong (normal losses are < 1e3)
# where to look when a loss term blows up: the train params that drive it
LOSS_PARAMS = {"wasserstein": "lr, gp_weight, critic_iters", "g_adv": "lr", "vae": "vae_weight, lr",
               "g_cls": "cls_weight", "g_cycle": "cycle_weight, decoder_lr", "g_fem": "fem_weight, fem_lr",
               "fem": "fem_lr, fem_temperature, balance_weight", "decoder": "decoder_lr",
               "gp_weight": "gp_adaptive, gp_weight",
               "embed_ins": "lr, embed_ins_temperature", "embed_cls": "lr, embed_cls_temperature, embed_hidden",
               "g_embed_ins": "embed_ins_weight, embed_ins_temperature",
               "g_embed_cls": "embed_cls_weight, embed_cls_temperature",
               "embed_s2f": "lr, embed_cls_temperature", "embed_balance": "embed_balance_weight, lr",
               "g_embed_balance": "embed_cls_weight, embed_balance_weight"}


def check_finite(row: dict, label: str) -> None:
    """Stop with a clear error if an epoch's mean loss is non-finite or beyond ``DIVERGED``.

    Runs once per epoch on the already-read means, so it costs no extra host sync."""
    for term, value in row.items():
        if term != "epoch" and not (math.isfinite(value) and abs(value) <= DIVERGED):
            raise TrainingDiverged(
                f"{label}: training diverged at epoch {row['epoch']}: loss '{term}' is {value:g}; "
                f"look at the train params {LOSS_PARAMS.get(term, 'lr')} (dvc exp run -S train.<DATASET>.lr=...)")


class _Run:
    """One seed's training loop: ``step()`` runs one iteration and adds its losses into
    device-side sums; ``epoch_means()`` reads them once per epoch (the only host sync).

    On CUDA the first ``WARMUP`` iterations run eagerly on the run's own stream (they are
    real iterations of epoch 1, and CUDA graphs need them to set up Adam's state and the
    libraries' workspaces), the next is captured as a graph, and every later one replays it.
    """

    WARMUP = 3

    def __init__(self, state: TrainState, graphs: bool):
        self.s = state
        self.sums: dict[str, torch.Tensor] = {}
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup_left = self.WARMUP if graphs else None  # pragma: no mutate (CUDA only)
        self.stream = torch.cuda.Stream(state.x.device) if graphs else None  # pragma: no mutate (CUDA only)

    def _eager(self) -> None:
        for k, v in iteration(self.s).items():
            if k not in self.sums:
                self.sums[k] = torch.zeros((), device=v.device)
            self.sums[k].add_(v.detach())

    def step(self) -> None:
        if self.stream is None:
            self._eager()
            return
        # pragma: no mutate start (CUDA only: no GPU where the mutation tests run)
        with torch.cuda.stream(self.stream):
            if self.graph is not None:
                self.graph.replay()
            elif self.warmup_left > 0:
                self._eager()
                self.warmup_left -= 1
            else:  # capture; the captured iteration runs at its first replay
                self.graph = torch.cuda.CUDAGraph()
                self.graph.register_generator_state(self.s.gen)
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self._eager()
                self.graph.replay()
        # pragma: no mutate end

    def epoch_means(self, iters: int) -> dict[str, float]:
        if self.stream is not None:  # pragma: no mutate (CUDA only)
            self.stream.synchronize()  # pragma: no mutate (CUDA only)
        means = {k: float(v) / iters for k, v in sorted(self.sums.items())}
        for v in self.sums.values():
            v.zero_()
        return means


def _finish(s: TrainState) -> GenerativeModel:
    for net in s.model.networks():
        net.eval()
    return s.model


def _loop(states: list[TrainState], graphs: bool | None, label: str, on_epoch: EpochHook | None,
          checkpoint_path: Path | None = None) -> list[tuple[GenerativeModel, list[dict]]]:
    """Train the runs of ``states`` side by side for ``cfg.epochs`` epochs.

    ``checkpoint_path`` (one run only): resume from it if it holds this run, and write it
    every ``cfg.checkpoint_every`` epochs.
    """
    first = states[0]
    cfg, device = first.cfg, first.x.device
    histories: list[list[dict]] = [[] for _ in states]
    if checkpoint_path is not None:
        assert len(states) == 1, "checkpoints are for single runs"
        histories[0] = checkpoint.restore(checkpoint_path, first, label)
    done = len(histories[0])
    graphs = device.type == "cuda" if graphs is None else graphs  # pragma: no mutate (CUDA only)
    if graphs:  # pragma: no mutate (CUDA only) setup ran on the default stream; the runs' streams must see it
        torch.cuda.current_stream(device).synchronize()  # pragma: no mutate (CUDA only)
    runs = [_Run(s, graphs) for s in states]
    iters = math.ceil(len(first.x) / cfg.batch_size)  # an epoch = one pass over the real features
    progress = Progress(label, cfg.epochs, unit=" epochs")
    progress.update(done)
    for epoch in range(done + 1, cfg.epochs + 1):
        for _ in range(iters):
            for run in runs:
                run.step()
        for i, (run, history) in enumerate(zip(runs, histories)):
            history.append({"epoch": epoch, **{k: round(v, 6) for k, v in run.epoch_means(iters).items()}})
            check_finite(history[-1], label if len(runs) == 1 else f"{label}, run {i + 1} of {len(runs)}")
        progress.update(1, info=f"W={histories[0][-1]['wasserstein']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch, histories[0][-1])
        if checkpoint_path is not None and cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 \
                and epoch < cfg.epochs:
            checkpoint.save(checkpoint_path, first, histories[0])
    progress.close()
    return [(_finish(s), h) for s, h in zip(states, histories)]


def train(bench: Benchmark, cfg: TrainConfig, device: torch.device, label: str = "train",
          graphs: bool | None = None, on_epoch: EpochHook | None = None,
          checkpoint_path: Path | None = None) -> tuple[GenerativeModel, list[dict]]:
    """Train on ``bench``'s seen classes; return the model and per-epoch mean losses.

    The caller seeds the RNGs (:func:`bsegn.runtime.seed_everything`) beforehand.
    ``graphs`` (default: on for CUDA) captures and replays each iteration as a CUDA graph.
    ``on_epoch(epoch, row)`` is called after every epoch with its history row.
    ``checkpoint_path``: resume from / write checkpoints there (:mod:`bsegn.checkpoint`).
    """
    return _loop([setup(bench, cfg, device)], graphs, label, on_epoch, checkpoint_path)[0]


def train_many(bench: Benchmark, cfg: TrainConfig, device: torch.device, seeds: list[int],
               label: str = "train", graphs: bool | None = None,
               on_epoch: EpochHook | None = None) -> list[tuple[GenerativeModel, list[dict]]]:
    """One model per seed, trained side by side; ``[(model, history)]`` in the order of ``seeds``.

    Seed ``k``'s run is set up right after ``seed_everything(k)`` and draws from its own
    random stream, so it is the run :func:`train` gives after ``seed_everything(k)``, whichever
    seeds train beside it. On CUDA each run replays its graph on its own stream, so the small
    kernels of several seeds share the GPU. ``on_epoch`` sees the first seed's rows.
    """
    states = []
    for seed in seeds:
        seed_everything(seed)
        states.append(setup(bench, cfg, device))
    return _loop(states, graphs, label, on_epoch)


def run_train(bench: Benchmark, run: RunConfig, seed: int, label: str = "train",
              checkpoint_path: Path | None = None) -> tuple[GenerativeModel, list[dict]]:
    """Stage ``train``: the generative model on ``bench``'s seen classes, and its loss log."""
    seed_everything(seed)
    return train(bench, run.train, run.device, label=label, checkpoint_path=checkpoint_path)


def run_train_val(val: Benchmark, run: RunConfig, seed: int, label: str = "train_val",
                  checkpoint_path: Path | None = None) -> Validation:
    """Stage ``train_val``: train and generate as above, on the class-level validation split
    (with :func:`bsegn.pipeline.validation_syn_num` fakes per held-out class)."""
    model, _ = run_train(val, run, seed, label, checkpoint_path)
    return Validation(val, model, *run_generate(val, model, run, seed, validation_syn_num(val, run.generate.syn_num)))
