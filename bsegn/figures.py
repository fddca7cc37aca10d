"""PNG figures of one run: where GZSL accuracy goes and why.

* ``per_class.png``: per-class GZSL accuracy, seen and unseen classes side by side;
* ``domain_confusion.png``: how many test images of each domain are predicted into the
  seen or the unseen class group (the seen bias in one picture);
* ``projection.png``: a 2-D PCA of real unseen test features against the synthetic
  unseen features (do the fakes land where the real ones are?).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402
from .metrics import class_accuracies  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def per_class(pred: dict[str, np.ndarray], path: Path, title: str) -> None:
    seen = class_accuracies(pred["test_seen_y"], pred["test_seen_pred"])
    unseen = class_accuracies(pred["test_unseen_y"], pred["test_unseen_pred"])
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * (len(seen) + len(unseen))), 3.5))
    s_vals = sorted((100.0 * a for a in seen.values()), reverse=True)  # in %
    u_vals = sorted((100.0 * a for a in unseen.values()), reverse=True)
    ax.bar(np.arange(len(s_vals)), s_vals, color="tab:blue", label=f"seen (mean {np.mean(s_vals):.1f})")
    ax.bar(len(s_vals) + 1 + np.arange(len(u_vals)), u_vals, color="tab:orange",
           label=f"unseen (mean {np.mean(u_vals):.1f})")
    ax.set(xlabel="class (sorted by accuracy within its group)", ylabel="GZSL top-1 accuracy (%)",
           ylim=(0, 100), title=title, xticks=[])
    ax.legend(loc="upper right")
    _save(fig, path)


def domain_confusion_matrix(pred: dict[str, np.ndarray]) -> np.ndarray:
    """(2, 2) fractions: rows true domain (seen, unseen), columns predicted group (seen, unseen)."""
    seen = set(pred["seen"].tolist())
    rows = []
    for key in ("test_seen_pred", "test_unseen_pred"):
        to_seen = np.mean([p in seen for p in pred[key]])
        rows.append([to_seen, 1.0 - to_seen])
    return np.array(rows)


def domain_confusion(pred: dict[str, np.ndarray], path: Path, title: str) -> None:
    m = 100.0 * domain_confusion_matrix(pred)
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=100)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{m[i, j]:.1f}%", ha="center", va="center", color="white" if m[i, j] > 50 else "black")
    ax.set(xticks=[0, 1], xticklabels=["seen classes", "unseen classes"], yticks=[0, 1],
           yticklabels=["seen images", "unseen images"], xlabel="predicted into", title=title)
    _save(fig, path)


def pca_2d(*arrays: np.ndarray) -> list[np.ndarray]:
    """Project the arrays on the top-2 principal axes of all of them together."""
    stacked = np.concatenate(arrays)
    mean = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    return [(a - mean) @ vt[:2].T for a in arrays]


def projection(real_x: np.ndarray, real_y: np.ndarray, syn_x: np.ndarray, syn_y: np.ndarray,
               path: Path, title: str, max_per_class: int = 100, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)

    def subsample(x, y):
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:max_per_class] for c in np.unique(y)])
        return x[keep], y[keep]

    (rx, ry), (sx, sy) = subsample(real_x, real_y), subsample(syn_x, syn_y)
    rp, sp = pca_2d(rx, sx)
    classes = np.unique(ry)
    cmap = plt.get_cmap("tab20", max(len(classes), 1))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for i, c in enumerate(classes):
        ax.scatter(*rp[ry == c].T, s=8, marker="o", color=cmap(i), alpha=0.6)
        ax.scatter(*sp[sy == c].T, s=14, marker="x", color=cmap(i), alpha=0.6)
    ax.scatter([], [], marker="o", color="gray", label="real unseen test")
    ax.scatter([], [], marker="x", color="gray", label="synthetic unseen")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def draw_all(pred: dict[str, np.ndarray], real_x: np.ndarray, real_y: np.ndarray, syn_x: np.ndarray,
             syn_y: np.ndarray, out_dir: Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / "per_class.png", out_dir / "domain_confusion.png", out_dir / "projection.png"]
    per_class(pred, paths[0], f"{name}: per-class GZSL accuracy")
    domain_confusion(pred, paths[1], f"{name}: GZSL domain confusion")
    projection(real_x, real_y, syn_x, syn_y, paths[2], f"{name}: real vs synthetic unseen (PCA)")
    return paths
