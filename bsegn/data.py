"""Reading, checking and preparing xlsa17-format benchmarks.

Input (one folder per dataset, as the download stage leaves it):

* ``res101.mat``: ``features`` (d_feat, N) and ``labels`` (N, 1), 1-based class ids;
* ``att_splits.mat``: ``att`` (d_att, n_cls) and 1-based image indices ``trainval_loc``,
  ``test_seen_loc``, ``test_unseen_loc`` (+ ``train_loc``/``val_loc`` in some files);
* optional class lists ``trainclasses1.txt`` / ``valclasses1.txt`` (+ ``allclasses.txt``).

Output: a :class:`Benchmark` of float32 arrays with 0-based class ids, for the proposed
split and for a class-level validation split, saved as one ``.npz``.

The validation split is built from *class* memberships only, with images taken from
``trainval_loc``: in the xlsa17 release ``train_loc``/``val_loc`` also contain the
``test_seen`` images (train + val = trainval + test_seen), so using them directly would
let validation train on test images.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import scipy.io as sio

from .config import PrepareConfig
from .errors import PipelineError
from .io import load_npz, save_npz


class DataError(PipelineError, ValueError):
    """A benchmark file is missing, lacks a key, or has inconsistent shapes or indices."""


SPLIT_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc")


@dataclass
class Splits:
    """What ``att_splits.mat`` (+ class lists) says; indices 0-based here."""

    att: np.ndarray  # (n_cls, d_att)
    trainval: np.ndarray  # (n,) image indices
    test_seen: np.ndarray
    test_unseen: np.ndarray
    val_classes: np.ndarray | None  # seen classes held out for validation (0-based)
    class_names: list[str] | None


@dataclass
class Benchmark:
    """A prepared dataset. ``*_x``: (n, d_feat) float32; ``*_y``: (n,) int64 class ids."""

    att: np.ndarray  # (n_cls, d_att) float32
    seen: np.ndarray  # (n_seen,) class ids of the training classes
    unseen: np.ndarray  # (n_unseen,)
    train_x: np.ndarray
    train_y: np.ndarray
    test_seen_x: np.ndarray
    test_seen_y: np.ndarray
    test_unseen_x: np.ndarray
    test_unseen_y: np.ndarray

    @property
    def d_feat(self) -> int:
        return self.train_x.shape[1]

    @property
    def d_att(self) -> int:
        return self.att.shape[1]


# --------------------------------------------------------------------------- reading


def _loadmat(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return sio.loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: not a readable MATLAB file ({exc})") from None


def _key(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: missing key '{key}' (present: {present})")
    return np.asarray(mat[key])


def _real(v: np.ndarray) -> bool:
    """Real numbers (integer or floating point): not bool, complex, strings or objects."""
    return np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)


def _integers(v: np.ndarray) -> bool:
    if not _real(v):
        return False
    with np.errstate(invalid="ignore"):  # NaN and inf are simply not integers
        return bool(np.all(np.equal(np.mod(v, 1), 0)))


def split_indices(mat: dict, key: str, path: Path) -> np.ndarray:
    """The checked 1-based image indices ``mat[key]`` (an (n, 1) vector), as 0-based rows."""
    v = _key(mat, key, path)
    if v.ndim != 2 or 1 not in v.shape or v.size == 0:
        raise DataError(f"{path}: '{key}' must be a non-empty (n, 1) index vector, got shape {v.shape}")
    if not _integers(v):
        raise DataError(f"{path}: '{key}' must hold integer indices, got dtype {v.dtype}")
    v = v.reshape(-1).astype(np.int64)
    if v.min() < 1:
        raise DataError(f"{path}: '{key}' has index {v.min()}; indices are 1-based (>= 1)")
    if len(np.unique(v)) != len(v):
        raise DataError(f"{path}: '{key}' repeats an image index")
    return v - 1


def class_list(path: Path) -> list[str]:
    """The class names of a class-list file (``valclasses1.txt`` ...), one per line."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def class_names(mat: dict, folder: Path) -> list[str] | None:
    """Class names from ``allclasses_names`` in att_splits.mat, else ``allclasses.txt``."""
    if "allclasses_names" in mat:
        return [str(np.asarray(n).reshape(-1)[0]) for n in np.asarray(mat["allclasses_names"]).reshape(-1)]
    if (folder / "allclasses.txt").exists():
        return class_list(folder / "allclasses.txt")
    return None


def named_classes(path: Path, names: list[str] | None) -> np.ndarray:
    """Sorted indices of the classes the class-list file ``path`` names."""
    if names is None:
        raise DataError(f"{path.parent}: {path.name} needs class names (allclasses_names or allclasses.txt)")
    index = {n: i for i, n in enumerate(names)}
    wanted = class_list(path)
    missing = [n for n in wanted if n not in index]
    if missing:
        raise DataError(f"{path}: unknown class name(s) {missing[:3]}")
    return np.array(sorted(index[n] for n in wanted), dtype=np.int64)


def read_splits(folder: str | Path) -> tuple[Splits, dict]:
    """Read and check ``att_splits.mat`` (and class lists) in ``folder``.

    Returns the checked splits and the raw MATLAB variables (for optional keys)."""
    folder = Path(folder)
    path = folder / "att_splits.mat"
    mat = _loadmat(path)
    att = _key(mat, "att", path)
    if att.ndim != 2 or min(att.shape) < 1 or not _real(att):
        raise DataError(f"{path}: 'att' must be a numeric (d_att, n_classes) matrix, got shape {att.shape}")
    if not np.all(np.isfinite(att)):
        raise DataError(f"{path}: 'att' contains NaN or infinite values")
    att = att.T.astype(np.float32)  # (n_cls, d_att)
    locs = {k: split_indices(mat, k, path) for k in SPLIT_KEYS}
    for i, a in enumerate(SPLIT_KEYS):
        for b in SPLIT_KEYS[i + 1:]:
            both = np.intersect1d(locs[a], locs[b])
            if len(both):
                raise DataError(f"{path}: '{a}' and '{b}' overlap ({len(both)} images, e.g. {both[0] + 1})")

    names = class_names(mat, folder)
    if names is not None and len(names) != att.shape[0]:
        raise DataError(f"{path}: {len(names)} class names but 'att' has {att.shape[0]} classes")

    val_classes = None
    if (folder / "valclasses1.txt").exists():
        val_classes = named_classes(folder / "valclasses1.txt", names)
    return Splits(att, locs["trainval_loc"], locs["test_seen_loc"], locs["test_unseen_loc"],
                  val_classes, names), mat


def read_features(folder: str | Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``features``: (N, d_feat) float32 and ``labels``: (N,) 0-based, from ``res101.mat``."""
    path = Path(folder) / "res101.mat"
    mat = _loadmat(path)
    feats = _key(mat, "features", path)
    labels = _key(mat, "labels", path)
    if feats.ndim != 2 or min(feats.shape) < 1 or not _real(feats):
        raise DataError(f"{path}: 'features' must be a numeric (d_feat, N) matrix, got shape {feats.shape} "
                        f"and dtype {feats.dtype}")
    if labels.ndim != 2 or 1 not in labels.shape or labels.size == 0:
        raise DataError(f"{path}: 'labels' must be a non-empty (N, 1) vector, got shape {labels.shape}")
    if not _integers(labels):
        raise DataError(f"{path}: 'labels' must hold integer class ids, got dtype {labels.dtype}")
    labels = labels.reshape(-1).astype(np.int64)
    if feats.shape[1] != len(labels):
        raise DataError(f"{path}: 'features' has {feats.shape[1]} columns (images) but 'labels' has "
                        f"{len(labels)} entries; expected features as (d_feat, N)")
    if labels.min() < 1 or labels.max() > n_classes:
        raise DataError(f"{path}: 'labels' must be 1-based class ids in 1..{n_classes} "
                        f"(the classes of att_splits.mat 'att'), found {labels.min()}..{labels.max()}")
    if not np.all(np.isfinite(feats)):
        raise DataError(f"{path}: 'features' contains NaN or infinite values")
    return np.ascontiguousarray(feats.T, dtype=np.float32), labels - 1


# --------------------------------------------------------------------------- checking


def validation_classes(splits: Splits, mat: dict, labels: np.ndarray, folder: Path) -> np.ndarray:
    """Seen classes held out for validation: from val_loc, else from valclasses1.txt."""
    if "val_loc" in mat and "train_loc" in mat:
        val_loc = split_indices(mat, "val_loc", folder / "att_splits.mat")
        if val_loc.max() >= len(labels):
            raise DataError(f"{folder / 'att_splits.mat'}: 'val_loc' index {val_loc.max() + 1} > N={len(labels)}")
        return np.unique(labels[val_loc])
    if splits.val_classes is not None:
        return splits.val_classes
    raise DataError(f"{folder}: no class-level validation split: att_splits.mat lacks "
                    f"'train_loc'/'val_loc' and there is no valclasses1.txt")


def check_splits(splits: Splits, labels: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check split indices against the labels; return the (seen, unseen) class ids."""
    n = len(labels)
    for name, idx in (("trainval_loc", splits.trainval), ("test_seen_loc", splits.test_seen),
                      ("test_unseen_loc", splits.test_unseen)):
        if idx.max() >= n:
            raise DataError(f"{path}: '{name}' has index {idx.max() + 1} but res101.mat has only N={n} images")
    seen = np.unique(labels[splits.trainval])
    unseen = np.unique(labels[splits.test_unseen])
    if np.intersect1d(seen, unseen).size:
        raise DataError(f"{path}: classes {np.intersect1d(seen, unseen)[:5] + 1} appear in both "
                        f"trainval_loc and test_unseen_loc; unseen classes must not be trained on")
    extra = np.setdiff1d(np.unique(labels[splits.test_seen]), seen)
    if extra.size:
        raise DataError(f"{path}: test_seen_loc has classes {extra[:5] + 1} absent from trainval_loc")
    return seen, unseen


# --------------------------------------------------------------------------- preparing


def _scale(train: np.ndarray, others: list[np.ndarray], how: str) -> list[np.ndarray]:
    """Min-max scaling fitted on ``train`` only (as in the f-CLSWGAN code)."""
    if how == "none":
        return [train] + others
    lo, hi = train.min(axis=0), train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return [((a - lo) / span).astype(np.float32) for a in [train] + others]


def _make(att, x, labels, train_idx, test_seen_idx, test_unseen_idx, cfg: PrepareConfig) -> Benchmark:
    tr, ts, tu = _scale(x[train_idx], [x[test_seen_idx], x[test_unseen_idx]], cfg.feature_scaling)
    return Benchmark(
        att=att, seen=np.unique(labels[train_idx]), unseen=np.unique(labels[test_unseen_idx]),
        train_x=tr, train_y=labels[train_idx], test_seen_x=ts, test_seen_y=labels[test_seen_idx],
        test_unseen_x=tu, test_unseen_y=labels[test_unseen_idx],
    )


def _read_checked(folder: Path) -> tuple[Splits, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every check a raw folder must pass; ``(splits, x, labels, seen, unseen, val classes)``."""
    splits, mat = read_splits(folder)
    x, labels = read_features(folder, splits.att.shape[0])
    seen, unseen = check_splits(splits, labels, folder / "att_splits.mat")
    val_cls = validation_classes(splits, mat, labels, folder)
    if not np.isin(val_cls, seen).all() or len(val_cls) >= len(seen):
        raise DataError(f"{folder}: validation classes must be a proper subset of the trainval classes")
    return splits, x, labels, seen, unseen, val_cls


def check_raw(folder: str | Path) -> dict:
    """Read and check a raw dataset folder exactly as :func:`prepare` will (readable files, keys,
    shapes, finite values, index ranges, splits, validation classes); raise DataError if not.
    Returns a short summary (classes, images, dimensions) for provenance."""
    splits, x, labels, seen, unseen, val_cls = _read_checked(Path(folder))
    return {"n_images": len(labels), "d_feat": x.shape[1], "d_att": splits.att.shape[1], "n_seen": len(seen),
            "n_unseen": len(unseen), "n_val_classes": len(val_cls)}


def prepare(folder: str | Path, cfg: PrepareConfig) -> dict[str, Benchmark]:
    """Read, check and preprocess a dataset folder.

    Returns ``{"test": proposed split, "val": class-level validation split}``. In the
    validation split the held-out seen classes play the unseen role and a seeded
    ``val_seen_fraction`` of the other classes' images is their seen test set.
    """
    splits, x, labels, seen, _, val_cls = _read_checked(Path(folder))
    att = splits.att
    if cfg.normalize_attributes:
        att = att / np.maximum(np.linalg.norm(att, axis=1, keepdims=True), 1e-12)
    att = att.astype(np.float32)

    tv = splits.trainval
    in_val = np.isin(labels[tv], val_cls)
    rng = np.random.default_rng(cfg.split_seed)
    val_train, val_seen = [], []
    for c in np.setdiff1d(seen, val_cls):  # per class, so every class keeps training images
        idx = tv[labels[tv] == c]
        n_hold = int(round(cfg.val_seen_fraction * len(idx)))
        n_hold = min(max(n_hold, 1), len(idx) - 1) if len(idx) > 1 else 0
        perm = rng.permutation(idx)
        val_seen.append(perm[:n_hold])
        val_train.append(perm[n_hold:])
    val_train, val_seen = np.sort(np.concatenate(val_train)), np.sort(np.concatenate(val_seen))

    return {
        "test": _make(att, x, labels, tv, splits.test_seen, splits.test_unseen, cfg),
        "val": _make(att, x, labels, val_train, val_seen, tv[in_val], cfg),
    }


def save_prepared(path: str | Path, prepared: dict[str, Benchmark]) -> None:
    arrays = {}
    for split, bench in prepared.items():
        for f in fields(Benchmark):
            arrays[f"{split}/{f.name}"] = getattr(bench, f.name)
    save_npz(path, **arrays)


def load_prepared(path: str | Path, split: str = "test") -> Benchmark:
    """Load one split (``test`` or ``val``) of a prepared ``.npz``."""
    arrays = load_npz(path)
    prefix = f"{split}/"
    if not any(k.startswith(prefix) for k in arrays):
        raise DataError(f"{path}: no split '{split}' (has {sorted({k.split('/')[0] for k in arrays})})")
    return Benchmark(**{f.name: arrays[prefix + f.name] for f in fields(Benchmark)})
