"""The trained generative model: what the train stage saves and later stages load, and the
generate stage, which samples it (:func:`run_generate`).

Kept apart from :mod:`bsegn.trainer` so that generating features, the mFIM and the
final classifier depend on the networks and this file only, not on the training losses
(a change to a loss reruns training, not the stages that merely load the result).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import TrainConfig
from .io import atomic_path
from .nets import FEM, ContrastiveEmbedding, Feedback, Generator, SemanticDecoder
from .runtime import seed_everything

if TYPE_CHECKING:  # annotations only: bsegn.pipeline imports this module
    from .data import Benchmark
    from .pipeline import RunConfig


@dataclass
class GenerativeModel:
    """What the train stage saves: everything later stages need, nothing more."""

    cfg: TrainConfig
    generator: Generator
    decoder: SemanticDecoder  # cycle branch R; always trained (cheap), used by the mFIM
    fem: FEM | None
    feedback: Feedback | None = None  # TF-VAEGAN's feedback module (train.feedback)
    embedding: ContrastiveEmbedding | None = None  # CE-GZSL's embedding (train.embed), the mFIM's `embedding`

    def networks(self) -> list[torch.nn.Module]:
        return [net for net in (self.generator, self.decoder, self.fem, self.feedback, self.embedding)
                if net is not None]

    def features(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """G(z, a): (n, d_noise), (n, d_att) -> (n, d_feat); with the feedback module, the
        second pass: G's hidden layer plus feedback_weight * F_b(R's hidden layer of the first
        pass), through G's output layer again. R's activations are detached, as in TF-VAEGAN,
        so only the second pass and F_b learn from it; G's hidden layer is computed once."""
        if self.feedback is None:
            return self.generator(z, a)
        G = self.generator
        h = G.hidden(z, a)  # (n, d_hidden)
        h_r = self.decoder(G.output(h))[1].detach()  # (n, d_hidden)
        return G.output(h + self.cfg.feedback_weight * self.feedback(h_r))

    def save(self, path: str | Path) -> None:
        payload = {
            "cfg": dataclasses.asdict(self.cfg),
            "dims": {"d_noise": self.generator.d_noise, "d_att": self.decoder.out.out_features,
                     "d_feat": self.decoder.hidden[0].in_features},
            "generator": self.generator.state_dict(),
            "decoder": self.decoder.state_dict(),
            "fem": None if self.fem is None else self.fem.state_dict(),
            "feedback": None if self.feedback is None else self.feedback.state_dict(),
            "embedding": None if self.embedding is None else self.embedding.state_dict(),
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
        if model.feedback is not None:
            model.feedback.load_state_dict(payload["feedback"])
        if model.embedding is not None:
            model.embedding.load_state_dict(payload["embedding"])
        for net in model.networks():
            net.to(device).eval()
        return model


def build_model(cfg: TrainConfig, d_noise: int, d_att: int, d_feat: int) -> GenerativeModel:
    d_embed = None if cfg.fem_space == "attribute" else cfg.fem_dim
    d_out = cfg.fem_out_dim if cfg.fem_space == "contrastive" else None
    fem = FEM(d_feat, d_att, cfg.fem_hidden, d_embed, d_out) if cfg.fem else None
    G = Generator(d_noise, d_att, cfg.hidden, d_feat, cfg.generator_output)
    R = SemanticDecoder(d_feat, d_att, cfg.hidden, cfg.decoder_output)
    feedback = Feedback(cfg.hidden) if cfg.feedback else None  # built after G and R: they start as without it
    # CE-GZSL's embedding, built after them all for the same reason
    embedding = ContrastiveEmbedding(d_feat, cfg.embed_dim, cfg.embed_out_dim) if cfg.embed else None
    return GenerativeModel(cfg, G, R, fem, feedback, embedding)


@torch.no_grad()
def generate(model: GenerativeModel, att: torch.Tensor, classes: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` synthetic features for each class id in ``classes``.

    ``att``: (n_cls, d_att). Returns x: (len(classes) * per_class, d_feat) and y class ids.
    """
    y = classes.repeat_interleave(per_class)
    z = torch.randn(len(y), model.generator.d_noise, device=att.device)  # the global stream, seeded by the stage
    return model.features(z, att[y]), y


def run_generate(bench: Benchmark, model: GenerativeModel, run: RunConfig, seed: int,
                 syn_num: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage ``generate``: ``syn_num`` (default ``generate.syn_num``) synthetic features per
    unseen class (x, class ids)."""
    seed_everything(seed)
    x, y = generate(model, torch.as_tensor(bench.att, device=run.device),
                    torch.as_tensor(bench.unseen, device=run.device), run.generate.syn_num if syn_num is None else syn_num)
    return x.cpu().numpy(), y.cpu().numpy()
