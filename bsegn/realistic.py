"""The realistic embedded benchmarks (SYN_CUB, SYN_SUN, SYN_AWA2, SYN_FLO, ...): real splits,
generated features.

The real ResNet-101 feature files cannot be downloaded everywhere, but their split files
can be shipped (``data/splits/<DATASET>/``, with their provenance). A realistic benchmark
keeps everything of the real one except the pixels:

* the real ``att_splits.mat`` is copied as is: the real class semantics (attributes, or
  FLO's text embeddings), the real image indices of every split, hence the real split
  sizes (CUB: 7057 trainval, 1764 test seen, 2967 test unseen images);
* the real seen/unseen and validation classes (``trainvalclasses.txt``, ``testclasses.txt``,
  ``valclasses1.txt``); where a folder has no class lists (FLO) they are drawn, with the
  published class counts given in params;
* the real per-image labels where the folder has them (AWA2's ``labels_0based.npy``); else
  class sizes are drawn (``count_spread``) to sum exactly to the real split sizes.

Only the features are generated, 2048-d like ResNet-101 average-pool features:

* every class has a latent code ``h_c`` (``d_code`` factors): a share ``explained`` of its
  variance is a smooth nonlinear function of the class's semantic vector, the rest
  ``u_c`` is not predictable from it. An unseen class inherits ``kinship`` of its ``u_c``
  from its ``neighbours`` nearest seen classes in semantic space, so its images resemble
  seen classes a generator has fitted, which pulls GZSL predictions toward the seen; the
  validation classes inherit likewise from the other seen classes, so the validation split
  poses the test split's problem;
* an image's pre-activation is ``class_spread * h_c W + instance_spread * r_i M + noise * e_i``:
  class signal, a low-rank (``d_instance``) variation shared by all classes (pose,
  background: correlated dimensions within a class) and per-dimension noise;
* the feature is a soft ReLU of it, with the knee placed so that a share ``sparsity`` of
  values is near zero, multiplied by a per-image energy and a per-dimension scale, both
  log-normal with log-sd ``tail``: non-negative, sparse and heavy-tailed like pool features.

docs/METHOD.md ("Realistic benchmarks") gives what each knob does and how they were set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from scipy.special import ndtri

from .config import RealisticConfig
from .data import DataError, class_names, named_classes, read_splits, split_indices, validation_classes
from .synthetic import res101_variables, save_mat

# files of a split folder that the benchmark carries over (the loader reads them)
CLASS_LISTS = ("allclasses.txt", "trainvalclasses.txt", "testclasses.txt", "valclasses1.txt")
LABELS_FILE = "labels_0based.npy"  # real per-image labels, where a folder has them (AWA2)


def _listed(folder: Path, names: list[str] | None, listname: str, expected: int, key: str) -> np.ndarray | None:
    """Class indices named in ``folder/listname`` (there must be ``expected`` of them, the
    params ``key``), or None if the folder has no such list."""
    path = folder / listname
    if not path.exists():
        return None
    classes = named_classes(path, names)
    if len(classes) != expected:
        raise DataError(f"{path} lists {len(classes)} classes but {key} is {expected}")
    return classes


def _allocate(n: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``n`` items over classes in proportion to ``weights``, each getting ``minimum``
    or more; largest remainders make the counts sum to ``n`` exactly."""
    k = len(weights)
    if n < minimum * k:
        raise DataError(f"cannot give {k} classes {minimum} image(s) each from {n} images")
    share = (n - minimum * k) * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    rest = n - minimum * k - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts + minimum


def _label_group(labels: np.ndarray, classes: np.ndarray, parts: list[np.ndarray], weights: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Give the images ``parts`` (e.g. trainval rows, test-seen rows) labels from ``classes``:
    every part spreads over the classes in the same proportions; the first part gives every
    class at least one image (a seen class must have training images)."""
    for i, rows in enumerate(parts):
        counts = _allocate(len(rows), weights, minimum=1 if i == 0 else 0)
        labels[rng.permutation(rows)] = np.repeat(classes, counts)


def assign_labels(cfg: RealisticConfig, mat: dict, folder: Path, rng: np.random.Generator) -> np.ndarray:
    """0-based class label of every image row, consistent with the real split indices."""
    path = folder / "att_splits.mat"
    n_cls = np.asarray(mat["att"]).shape[1]
    trainval, test_seen, test_unseen = (split_indices(mat, k, path)
                                        for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc"))
    n_images = len(trainval) + len(test_seen) + len(test_unseen)
    if (folder / LABELS_FILE).exists():  # the real labels
        labels = np.load(folder / LABELS_FILE).astype(np.int64)
        if labels.shape != (n_images,) or labels.min() < 0 or labels.max() >= n_cls:
            raise DataError(f"{folder / LABELS_FILE}: expected {n_images} labels in 0..{n_cls - 1}")
        n_unseen = len(np.unique(labels[test_unseen]))
        if n_unseen != cfg.unseen_classes:
            raise DataError(f"{folder / LABELS_FILE}: {n_unseen} unseen classes but unseen_classes is {cfg.unseen_classes}")
        return labels

    names = class_names(mat, folder)
    unseen = _listed(folder, names, "testclasses.txt", cfg.unseen_classes, "unseen_classes")
    if unseen is None:  # no class lists (FLO): draw them, with the published counts
        unseen = np.sort(rng.choice(n_cls, size=cfg.unseen_classes, replace=False))
    seen = np.setdiff1d(np.arange(n_cls), unseen)
    val = _listed(folder, names, "valclasses1.txt", cfg.val_classes, "val_classes")
    if val is None:
        val = np.sort(rng.choice(seen, size=cfg.val_classes, replace=False))
    if np.intersect1d(val, unseen).size:
        raise DataError(f"{folder / 'valclasses1.txt'}: validation classes must be seen classes")

    # class sizes: gamma weights with coefficient of variation count_spread (0: equal sizes)
    if cfg.count_spread > 0:
        shape = 1.0 / cfg.count_spread ** 2
        weights = rng.gamma(shape, 1.0 / shape, size=n_cls)
    else:
        weights = np.ones(n_cls)
    labels = np.full(n_images, -1, dtype=np.int64)
    _label_group(labels, unseen, [test_unseen], weights[unseen], rng)
    seen_rows = np.concatenate([trainval, test_seen])
    if "val_loc" in mat:  # the real validation images: all seen images of the validation classes
        val_rows = split_indices(mat, "val_loc", path)
        if np.setdiff1d(val_rows, seen_rows).size:
            raise DataError(f"{path}: 'val_loc' holds images outside trainval_loc/test_seen_loc")
        groups = [(val, val_rows), (np.setdiff1d(seen, val), np.setdiff1d(seen_rows, val_rows))]
    else:
        groups = [(seen, seen_rows)]
    for classes, rows in groups:
        parts = [np.intersect1d(rows, trainval), np.intersect1d(rows, test_seen)]
        _label_group(labels, classes, parts, weights[classes], rng)
    return labels


def class_codes(cfg: RealisticConfig, att: np.ndarray, seen: np.ndarray, unseen: np.ndarray,
                rng: np.random.Generator, val: np.ndarray | None = None) -> np.ndarray:
    """Latent class codes ``h: (n_cls, d_code)``, unit variance per factor.

    ``att: (n_cls, d_att)`` the real class semantics; ``val``: the validation classes
    (seen classes), which inherit from the remaining seen classes as the unseen do from all."""
    n_cls, d_att = att.shape
    a = (att - att.mean(axis=0)) / (att.std(axis=0) + 1e-8)  # standardised per semantic dimension
    w1 = rng.normal(0.0, 2.0 / np.sqrt(d_att), size=(d_att, cfg.d_code))
    b1 = rng.normal(0.0, 0.5, size=cfg.d_code)
    e = np.tanh(a @ w1 + b1)  # the part the semantics predict, nonlinear in them
    e = (e - e.mean(axis=0)) / (e.std(axis=0) + 1e-8)

    u = rng.normal(size=(n_cls, cfg.d_code))  # the part they do not
    unit = att / np.linalg.norm(att, axis=1, keepdims=True)

    def inherit(targets: np.ndarray, sources: np.ndarray) -> None:
        """``targets`` take ``kinship`` of their rest from their nearest ``sources``."""
        similarity = unit[targets] @ unit[sources].T  # (n_targets, n_sources) cosine
        k = min(cfg.neighbours, len(sources))
        nearest = sources[np.argsort(-similarity, axis=1, kind="stable")[:, :k]]  # (n_targets, k)
        inherited = u[nearest].mean(axis=1) * np.sqrt(k)  # unit variance again
        u[targets] = cfg.kinship * inherited + np.sqrt(1.0 - cfg.kinship ** 2) * u[targets]

    # the validation classes stand to the other seen classes as the unseen stand to the seen,
    # so choices made on the validation split (classifier epochs, calibration, designs)
    # transfer to the test split; without this the validation split is a much harder
    # problem than the test split (measured: CUB validation T1 15 against test T1 39)
    if val is not None and len(val):
        inherit(val, np.setdiff1d(seen, val))
    inherit(unseen, seen)
    return np.sqrt(cfg.explained) * e + np.sqrt(1.0 - cfg.explained) * u


def make_features(cfg: RealisticConfig, h: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  chunk: int = 4096) -> np.ndarray:
    """Features ``(N, d_feat)`` float32 of images with ``labels``, from class codes ``h``."""
    w = rng.normal(0.0, 1.0 / np.sqrt(cfg.d_code), size=(cfg.d_code, cfg.d_feat))
    m = rng.normal(0.0, 1.0 / np.sqrt(max(cfg.d_instance, 1)), size=(max(cfg.d_instance, 1), cfg.d_feat))
    dim_scale = np.exp(cfg.tail * rng.normal(size=cfg.d_feat))  # (d_feat,)
    sd = np.sqrt(cfg.class_spread ** 2 + (cfg.instance_spread ** 2 if cfg.d_instance else 0.0) + cfg.noise ** 2)
    knee = sd * ndtri(cfg.sparsity)  # a share `sparsity` of pre-activations lies below it
    sharp = 4.0 / sd  # below the knee the soft ReLU is near zero, above it about linear
    class_part = cfg.class_spread * (h @ w)  # (n_cls, d_feat)
    out = np.empty((len(labels), cfg.d_feat), dtype=np.float32)
    for start in range(0, len(labels), chunk):  # bounded memory for the larger benchmarks
        rows = labels[start:start + chunk]
        pre = class_part[rows] + cfg.noise * rng.normal(size=(len(rows), cfg.d_feat))
        if cfg.d_instance:
            pre += cfg.instance_spread * (rng.normal(size=(len(rows), cfg.d_instance)) @ m)
        energy = np.exp(0.5 * cfg.tail * rng.normal(size=(len(rows), 1)))
        out[start:start + len(rows)] = energy * dim_scale * np.logaddexp(0.0, sharp * (pre - knee)) / sharp
    return out * np.float32(0.5 / out.mean())  # ResNet-101 pool features average about 0.5


def make_benchmark(cfg: RealisticConfig) -> tuple[dict, Path]:
    """The generated ``res101.mat`` variables, and the split folder they belong to."""
    folder = Path(cfg.splits)
    path = folder / "att_splits.mat"
    if not path.is_file():
        raise DataError(f"{path}: not found; a realistic benchmark needs the real split file "
                        f"(download.sources.<DATASET>.realistic.splits)")
    splits, mat = read_splits(folder)  # checked once; the raw variables for the optional keys
    rng = np.random.default_rng(cfg.seed)
    labels = assign_labels(cfg, mat, folder, rng)
    att = np.asarray(mat["att"], dtype=np.float64).T  # (n_cls, d_att)
    unseen = np.unique(labels[split_indices(mat, "test_unseen_loc", path)])
    seen = np.setdiff1d(np.arange(att.shape[0]), unseen)
    val = validation_classes(splits, mat, labels, folder)  # as the loader will find them
    h = class_codes(cfg, att, seen, unseen, rng, val)
    features = make_features(cfg, h, labels, rng)
    return res101_variables(features, labels, "realistic"), folder


def write_benchmark(cfg: RealisticConfig, out: str | Path) -> None:
    """Write the generated ``res101.mat`` and copy the real split files into ``out``."""
    out = Path(out)
    res101, folder = make_benchmark(cfg)
    save_mat(out / "res101.mat", res101, "bsegn.realistic", compress=False)  # 96 MB for CUB: zlib is slow
    for name in ("att_splits.mat",) + CLASS_LISTS:
        if (folder / name).exists():
            shutil.copyfile(folder / name, out / name)
