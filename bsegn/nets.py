"""The networks of BSeGN. Notation (docs/METHOD.md): x feature, a class semantics, z noise.

* ``Generator``  G(z, a) -> x          (f-CLSWGAN: one hidden LeakyReLU layer, ReLU output;
                                        TF-VAEGAN's sigmoid output as an option)
* ``Critic``     D(x, a) -> score      (WGAN critic, conditioned by concatenation)
* ``Encoder``    E(x, a) -> (mu, logvar) of z   (optional VAE branch, f-VAEGAN)
* ``SemanticDecoder`` R(x) -> (a_hat, h) (the cycle-consistency branch; h feeds the mFIM)
* ``Feedback``   F_b(h) -> a correction of G's hidden layer from R's hidden layer (TF-VAEGAN)
* ``FEM``        F(x) -> e, scored against every class vector (or its learned prototype)
* ``SoftmaxClassifier`` a linear layer; also the frozen seen-class classifier of f-CLSWGAN
* ``ContrastiveEmbedding`` x -> (h, z): CE-GZSL's embedding h and its unit-norm projection z
* ``Comparator`` F(h, a) -> score: CE-GZSL's class-level relevance of an embedding to a class
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import nn


def _init(module: nn.Module) -> None:
    # the published generative GZSL code initialises linear layers with N(0, 0.02)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, d_noise: int, d_att: int, d_hidden: int, d_feat: int, output: str = "relu"):
        super().__init__()
        self.d_noise = d_noise
        self.net = nn.Sequential(
            nn.Linear(d_noise + d_att, d_hidden), nn.LeakyReLU(0.2),
            nn.Linear(d_hidden, d_feat), {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}[output](),
        )
        _init(self)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=1))  # (n, d_feat)

    # the two layers apart, for TF-VAEGAN's feedback loop (GenerativeModel.features), which
    # corrects the hidden layer before the output layer
    def hidden(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net[1](self.net[0](torch.cat([z, a], dim=1)))  # (n, d_hidden)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        return self.net[3](self.net[2](h))  # (n, d_feat)


class Critic(nn.Module):
    def __init__(self, d_feat: int, d_att: int, d_hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_feat + d_att, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, 1))
        _init(self)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, a], dim=1)).squeeze(1)  # (n,)


class Encoder(nn.Module):
    """E: (x, a) -> the mean and log-variance of z. ``layers`` 2 adds TF-VAEGAN's second
    layer (d_hidden -> 2 * d_noise) before the heads."""

    def __init__(self, d_feat: int, d_att: int, d_hidden: int, d_noise: int, layers: int = 1):
        super().__init__()
        body = [nn.Linear(d_feat + d_att, d_hidden), nn.LeakyReLU(0.2)]
        d_body = {1: d_hidden, 2: 2 * d_noise}[layers]  # the heads read this width; config allows 1 or 2
        if layers == 2:
            body += [nn.Linear(d_hidden, d_body), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*body)
        self.mu = nn.Linear(d_body, d_noise)
        self.logvar = nn.Linear(d_body, d_noise)
        _init(self)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat([x, a], dim=1))
        return self.mu(h), self.logvar(h)  # (n, d_noise) each


class SemanticDecoder(nn.Module):
    """R: x -> a. Returns the reconstruction and its hidden activations (an mFIM level).
    ``output`` "l2norm" scales each reconstruction to unit norm (TF-VAEGAN's AttDec)."""

    def __init__(self, d_feat: int, d_att: int, d_hidden: int, output: str = "linear"):
        super().__init__()
        self.normalize = {"linear": False, "l2norm": True}[output]  # as Generator reads its output
        self.hidden = nn.Sequential(nn.Linear(d_feat, d_hidden), nn.LeakyReLU(0.2))
        self.out = nn.Linear(d_hidden, d_att)
        _init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)  # (n, d_hidden)
        a_hat = self.out(h)  # (n, d_att)
        return (F_.normalize(a_hat, dim=1) if self.normalize else a_hat), h


class Feedback(nn.Module):
    """TF-VAEGAN's feedback module: R's hidden activations of a first-pass fake -> a correction
    of G's hidden layer for the second pass; (n, d_hidden) -> (n, d_hidden)."""

    def __init__(self, d_hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_hidden, d_hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(d_hidden, d_hidden), nn.LeakyReLU(0.2))
        _init(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class FEM(nn.Module):
    """Feature-to-semantic embedding F and the class prototypes it scores against:
    ``cosine_logits(F(x), prototypes(A), tau)[i, c] = cos(F(x_i), p_c) / tau``.

    With ``d_embed`` None F maps into the attribute space and the prototypes are the class
    vectors themselves; otherwise F maps into a ``d_embed``-wide space and a second network P
    (same shape, from the class vectors) places each class there, ``p_c = P(a_c)``.

    With ``d_out`` as well (``fem_space: contrastive``) F has CE-GZSL's embedding shape: a
    ``d_embed``-wide ReLU layer ``h = ReLU(W1 x)``, which :meth:`level` gives the mFIM, and a
    linear head ``F(x) = W2 h`` of ``d_out`` that is scored against ``P(a)`` (also ``d_out``).
    """

    def __init__(self, d_feat: int, d_att: int, d_hidden: int, d_embed: int | None = None,
                 d_out: int | None = None):
        super().__init__()
        if d_out is not None and d_embed is None:
            raise ValueError("FEM: a contrastive head (d_out) needs the embedding width d_embed")
        self.hidden = None
        if d_out is None:
            d_out = d_att if d_embed is None else d_embed
            self.net = nn.Sequential(nn.Linear(d_feat, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, d_out))
        else:
            self.hidden = nn.Sequential(nn.Linear(d_feat, d_embed), nn.ReLU())
            self.net = nn.Linear(d_embed, d_out)  # the head, on h
        self.project = None if d_embed is None else nn.Sequential(
            nn.Linear(d_att, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, d_out))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (n, d_att, d_embed or d_out): the space it is scored in
        return self.net(x if self.hidden is None else self.hidden(x))

    def level(self, x: torch.Tensor) -> torch.Tensor:
        """What the mFIM's ``fem`` level reads: the wide layer h (n, d_embed) where F has one,
        else F(x)."""
        return self(x) if self.hidden is None else self.hidden(x)

    def prototypes(self, att: torch.Tensor) -> torch.Tensor:
        """``att``: (n_cls, d_att) -> (n_cls, d_att or d_embed), one point per class in F's space."""
        return att if self.project is None else self.project(att)


def cosine_logits(emb: torch.Tensor, att: torch.Tensor, temperature: float) -> torch.Tensor:
    """``emb``: (n, d), ``att``: (m, d) -> (n, m) cosine similarities divided by ``temperature``."""
    return F_.normalize(emb, dim=1) @ F_.normalize(att, dim=1).T / temperature


class SoftmaxClassifier(nn.Module):
    def __init__(self, d_in: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(d_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # (n, n_classes) logits


class ContrastiveEmbedding(nn.Module):
    """CE-GZSL's embedding net: ``h = ReLU(W1 x)`` (the space its final classifier reads) and
    ``z = normalize(W2 h)``, the projection its instance-level contrastive loss compares."""

    def __init__(self, d_feat: int, d_embed: int, d_out: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(d_feat, d_embed), nn.ReLU())
        self.project = nn.Linear(d_embed, d_out)
        _init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)  # (n, d_embed)
        return h, F_.normalize(self.project(h), dim=1)  # z: (n, d_out), unit rows


class Comparator(nn.Module):
    """CE-GZSL's comparator F: the concatenation ``[h, a]`` -> one LeakyReLU hidden layer -> a
    relevance score. :meth:`scores` rates every embedding against every class vector."""

    def __init__(self, d_embed: int, d_att: int, d_hidden: int):
        super().__init__()
        self.d_embed = d_embed
        self.net = nn.Sequential(nn.Linear(d_embed + d_att, d_hidden), nn.LeakyReLU(0.2), nn.Linear(d_hidden, 1))
        _init(self)

    def forward(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, a], dim=1)).squeeze(1)  # (n,) one score per (h_i, a_i) pair

    def scores(self, h: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """``h``: (n, d_embed), ``att``: (m, d_att) -> (n, m) with ``[i, c] = F(h_i, a_c)``.

        The first layer is linear in the concatenation, ``W [h; a] + b = W_h h + W_a a + b``, so
        the two halves are multiplied once each and added pairwise: the scores of the n * m
        concatenated rows (up to float summation order) without building those rows.
        """
        first, act, last = self.net
        w_h, w_a = first.weight[:, :self.d_embed], first.weight[:, self.d_embed:]
        pre = (h @ w_h.T)[:, None, :] + (att @ w_a.T + first.bias)[None, :, :]  # (n, m, d_hidden)
        return last(act(pre)).squeeze(2)
