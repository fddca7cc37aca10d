"""The embedded benchmark: a small, deterministic dataset in the exact xlsa17 layout.

It is written as ``res101.mat`` + ``att_splits.mat`` with the same keys, shapes and
1-based indices as the real release, so it travels the same loader and pipeline.

How it is made (each part chosen to reproduce a property of real GZSL data):

* every class has a latent code ``z_c = group centre + class offset`` (classes come in
  super-categories, like animals or bird families); each unseen class is a relative of a
  seen "parent" class (its code is the parent's plus an offset), moved by ``shift``
  along a fixed direction, so unseen semantics lie partly outside the seen range;
* attributes are a smooth function of the latent code, ``sigmoid(W z_c)``: structured,
  correlated, in (0, 1) like class-averaged annotations, L2-normalised in ``att``;
* features are ``relu(f(a_c) + unexplained * u_c + noise * eps)`` with ``f`` a fixed
  random two-layer network: non-negative like CNN pool features, nonlinear in the
  attributes, plus a per-class part ``u_c`` that the attributes do not explain. A generator
  learns ``u_c`` for seen classes from their images but can only guess it for unseen
  ones; an unseen class inherits ``kinship`` of its parent's ``u_c``, so its real images
  resemble a well-trained seen class: this pulls GZSL predictions toward seen classes;
* classes have unequal numbers of images; seen classes are split into trainval and
  test_seen images, and ``n_val`` seen classes form the class-level validation split.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import scipy.io as sio

from .config import SyntheticConfig
from .io import atomic_path


def make_benchmark(cfg: SyntheticConfig) -> tuple[dict, dict]:
    """Return the ``(res101, att_splits)`` dicts of MATLAB variables for ``cfg``."""
    if cfg.n_val >= cfg.n_seen:
        raise ValueError(f"synthetic.n_val ({cfg.n_val}) must be smaller than synthetic.n_seen ({cfg.n_seen})")
    rng = np.random.default_rng(cfg.seed)
    n_cls = cfg.n_seen + cfg.n_unseen

    # latent class codes in super-categories; unseen classes are shifted
    centres = rng.normal(0.0, 1.5, size=(cfg.n_groups, cfg.d_latent))
    group = rng.integers(0, cfg.n_groups, size=n_cls)
    z = centres[group] + rng.normal(0.0, 0.8, size=(n_cls, cfg.d_latent))  # (n_cls, d_latent)
    unseen = np.sort(rng.choice(n_cls, size=cfg.n_unseen, replace=False))
    seen = np.setdiff1d(np.arange(n_cls), unseen)
    # every unseen class is a close relative of a seen "parent" (a leopard for a tiger)
    parent = rng.choice(seen, size=cfg.n_unseen)
    z[unseen] = z[parent] + 0.6 * rng.normal(size=(cfg.n_unseen, cfg.d_latent))
    direction = rng.normal(size=cfg.d_latent)
    direction /= np.linalg.norm(direction)
    z[unseen] += 1.5 * cfg.shift * direction

    # attributes: structured, correlated, in (0, 1)
    w_att = rng.normal(0.0, 1.0, size=(cfg.d_latent, cfg.d_att)) / np.sqrt(cfg.d_latent)
    original_att = 1.0 / (1.0 + np.exp(-2.0 * z @ w_att))  # (n_cls, d_att)
    att = original_att / np.linalg.norm(original_att, axis=1, keepdims=True)

    # features: nonlinear map of attributes + class part the attributes miss + noise
    d_hid = 2 * cfg.d_feat
    w1 = rng.normal(0.0, 1.0, size=(cfg.d_att, d_hid)) * (3.0 / np.sqrt(cfg.d_att))
    b1 = rng.normal(0.0, 1.0, size=d_hid)
    w2 = rng.normal(0.0, 1.0, size=(d_hid, cfg.d_feat)) / np.sqrt(d_hid)
    centred = original_att - original_att.mean(axis=0)
    class_mean = np.tanh(centred @ w1 + b1) @ w2  # (n_cls, d_feat)
    class_mean = (class_mean - class_mean.mean()) / class_mean.std()
    # the unexplained part of an unseen class is partly inherited from its parent, so its
    # real images resemble a seen class that the final classifier has seen many times
    u = rng.normal(size=(n_cls, cfg.d_feat))
    u[unseen] = cfg.kinship * u[parent] + np.sqrt(1.0 - cfg.kinship ** 2) * u[unseen]
    class_mean += cfg.unexplained * u + 0.3

    counts = np.maximum(10, np.round(cfg.per_class * rng.uniform(0.7, 1.3, size=n_cls))).astype(int)
    labels = np.repeat(np.arange(n_cls), counts)  # 0-based here
    order = rng.permutation(len(labels))  # images are not stored class by class
    labels = labels[order]
    eps = rng.normal(size=(len(labels), cfg.d_feat))
    features = np.maximum(0.0, class_mean[labels] + cfg.noise * eps).astype(np.float32)

    # splits, as 1-based image indices
    is_unseen = np.isin(labels, unseen)
    val_classes = np.sort(rng.choice(seen, size=cfg.n_val, replace=False))
    test_seen = np.zeros(len(labels), dtype=bool)
    for c in seen:
        idx = np.flatnonzero(labels == c)
        n_test = max(1, int(round(cfg.test_seen_fraction * len(idx))))
        test_seen[rng.choice(idx, size=n_test, replace=False)] = True
    trainval = ~is_unseen & ~test_seen
    in_val = np.isin(labels, val_classes)

    def loc(mask: np.ndarray) -> np.ndarray:
        return (np.flatnonzero(mask) + 1).astype(np.int32).reshape(-1, 1)

    names = np.empty((n_cls, 1), dtype=object)
    names[:, 0] = [f"{c + 1:03d}.class_{c + 1}" for c in range(n_cls)]
    res101 = res101_variables(features, labels, "synthetic")
    att_splits = {
        "att": att.T,  # (d_att, n_cls)
        "original_att": original_att.T,
        "allclasses_names": names,
        "trainval_loc": loc(trainval),
        "test_seen_loc": loc(test_seen),
        "test_unseen_loc": loc(is_unseen),
        "train_loc": loc(trainval & ~in_val),
        "val_loc": loc(trainval & in_val),
    }
    return res101, att_splits


def res101_variables(features: np.ndarray, labels: np.ndarray, source: str) -> dict:
    """The ``res101.mat`` variables of generated features ``(N, d_feat)`` with 0-based
    ``labels``, in the xlsa17 layout; image file names say where they came from."""
    files = np.empty((len(labels), 1), dtype=object)
    files[:, 0] = [f"{source}/{labels[i] + 1:03d}/img_{i:05d}.jpg" for i in range(len(labels))]
    return {
        "features": features.T,  # (d_feat, N) as in xlsa17
        "labels": (labels + 1).astype(np.int32).reshape(-1, 1),
        "image_files": files,
    }


def save_mat(path: Path, variables: dict, writer: str, compress: bool) -> None:
    """Write a MAT-file atomically, byte-reproducibly: scipy puts the current time in the
    116-byte text header, which would make every regeneration a different file (and a
    different DVC hash) for the same data, so the header is fixed."""
    header = f"MATLAB 5.0 MAT-file, written by {writer}".encode().ljust(116, b" ")
    buf = io.BytesIO()
    sio.savemat(buf, variables, do_compression=compress)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + buf.getvalue()[len(header):])


def write_benchmark(cfg: SyntheticConfig, folder: str | Path) -> None:
    """Write ``res101.mat`` and ``att_splits.mat`` for ``cfg`` into ``folder`` (byte-reproducible)."""
    folder = Path(folder)
    res101, att_splits = make_benchmark(cfg)
    for name, variables in (("res101.mat", res101), ("att_splits.mat", att_splits)):
        save_mat(folder / name, variables, "bsegn.synthetic", compress=True)
