"""mFIM: the multilevel feature integration module (docs/METHOD.md, "mFIM").

The final classifier's input concatenates several views of a feature x, the levels
:data:`bsegn.config.MFIM_LEVELS` names:

* ``visual``:   x itself;
* ``hidden``:   the cycle branch's hidden activations h(x) (R's first layer);
* ``semantic``: the cycle branch's reconstructed semantics R(x);
* ``fem``:      the FEM embedding F(x), its wide layer h with ``fem_space: contrastive`` (only when
  the FEM was trained);
* ``embedding``: CE-GZSL's embedding h(x) (only with ``train.embed``). CE-GZSL's own final
  classifier reads h alone: ``mfim_levels: [embedding]`` with ``mfim_scaling: none``.

Each level is multiplied by ``mean||x|| / mean||level||`` (means over the classifier's
training set), so every block has the visual block's mean norm and none dominates; with
``scaling="none"`` the levels are concatenated as they come, as TF-VAEGAN's classifier reads
them. The same levels and scales are applied to real and synthetic, training and test features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_

from .config import MFIM_LEVELS, ConfigError
from .model import GenerativeModel


def levels(model: GenerativeModel, x: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    """The requested views of ``x``: (n, d_feat) -> list of (n, d_level), without gradients."""
    out = []
    with torch.no_grad():  # (a context, not a decorator: the mutation tester skips decorated functions)
        for name in names:
            if name == "visual":
                out.append(x)
            elif name in ("hidden", "semantic"):
                a_hat, h = model.decoder(x)
                out.append(h if name == "hidden" else a_hat)
            elif name == "fem":
                out.append(_trained(model.fem, name).level(x))
            elif name == "embedding":
                out.append(_trained(model.embedding, name)(x)[0])
            else:
                raise ConfigError(f"classify.mfim_levels: unknown level {name!r}; known: {list(MFIM_LEVELS)}")
    return out


def _trained(module: torch.nn.Module | None, level: str) -> torch.nn.Module:
    """The module ``level`` reads; a model trained without it (its train switch off) cannot give the level."""
    if module is None:
        raise ConfigError(f"classify.mfim_levels includes {level!r} but the model was trained with "
                          f"train.{MFIM_LEVELS[level]}: false; turn it on or drop the level")
    return module


def fit_scales(model: GenerativeModel, x_fit: torch.Tensor, names: list[str], per_sample: bool,
               scaling: str = "visual_norm") -> list[float]:
    """One scale per level so each has the mean norm of the visual features of ``x_fit``
    (``scaling="none"``: all 1, each level keeps its own norm, or unit norm when ``per_sample``)."""
    if scaling == "none":
        return [1.0] * len(names)
    ref = x_fit.detach().norm(dim=1).mean()
    if per_sample:
        return [float(ref)] * len(names)
    return [float(ref / lvl.norm(dim=1).mean().clamp_min(1e-12)) for lvl in levels(model, x_fit, names)]


def integrate(model: GenerativeModel, x: torch.Tensor, names: list[str], scales: list[float],
              per_sample: bool) -> torch.Tensor:
    """(n, d_feat) -> (n, sum of level dims): the scaled levels side by side.

    ``per_sample``: each level of each feature is L2-normalised (then scaled), which
    removes norm differences between real and generated features.
    """
    blocks = levels(model, x, names)
    if per_sample:
        blocks = [F_.normalize(b, dim=1) for b in blocks]
    return torch.cat([s * b for s, b in zip(scales, blocks)], dim=1)
