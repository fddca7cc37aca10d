"""The trained generative model: what the train stage saves and later stages load.

Kept apart from :mod:`bsegn.trainer` so that generating features, the mFIM and the
final classifier depend on the networks and this file only, not on the training losses
(a change to a loss reruns training, not the stages that merely load the result).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .io import atomic_path
from .nets import FEM, Generator, SemanticDecoder


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
    fem = FEM(d_feat, d_att, cfg.fem_hidden) if cfg.fem else None
    return GenerativeModel(cfg, Generator(d_noise, d_att, cfg.hidden, d_feat, cfg.generator_output),
                           SemanticDecoder(d_feat, d_att, cfg.hidden), fem)


@torch.no_grad()
def generate(model: GenerativeModel, att: torch.Tensor, classes: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` synthetic features for each class id in ``classes``.

    ``att``: (n_cls, d_att). Returns x: (len(classes) * per_class, d_feat) and y class ids.
    """
    y = classes.repeat_interleave(per_class)
    z = torch.randn(len(y), model.generator.d_noise, device=att.device)  # the global stream, seeded by the stage
    return model.generator(z, att[y]), y
