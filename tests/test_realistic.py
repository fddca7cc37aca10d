"""The realistic embedded benchmarks: real splits carried over, features like ResNet pool features."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from bsegn import realistic
from bsegn.config import download_config
from bsegn.data import DataError, check_raw, class_list, prepare, read_features, read_splits, validation_classes

from shipped import PARAMS, ROOT, prepare_cfg
from shipped import realistic_cfg as shipped

SPLITS = ROOT / "data/splits"
REALISTIC = sorted(name for name, src in download_config(PARAMS).sources.items() if src.realistic is not None)


def test_the_family_covers_the_six_benchmarks_and_four_have_a_confirmation_draw():
    assert [n for n in REALISTIC if not n.endswith("_CONF")] == [
        "SYN_APY", "SYN_AWA1", "SYN_AWA2", "SYN_CUB", "SYN_FLO", "SYN_SUN"]
    assert [n for n in REALISTIC if n.endswith("_CONF")] == [
        "SYN_AWA2_CONF", "SYN_CUB_CONF", "SYN_FLO_CONF", "SYN_SUN_CONF"]


def test_split_files_match_their_provenance_table():
    """data/splits/README.md lists every file with its size and SHA-256: an edited or added
    split file fails here instead of silently changing the benchmarks."""
    table = re.findall(r"^\| (\S+) \| (\d+) \| `([0-9a-f]{64})` \|$", (SPLITS / "README.md").read_text(), re.M)
    listed = {name: (int(size), digest) for name, size, digest in table}
    present = {str(p.relative_to(SPLITS)): p for p in SPLITS.rglob("*") if p.is_file() and p.name != "README.md"}
    assert sorted(listed) == sorted(present)
    for name, path in present.items():
        data = path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == listed[name], name
    assert not (SPLITS / "CUB/sent_splits.mat").exists()


@pytest.mark.parametrize("name", REALISTIC)
def test_labels_agree_with_the_real_splits(name):
    """Every image's class fits the real split indices: unseen classes only in test_unseen,
    the real class lists, the real validation images, every seen class trained on."""
    cfg = shipped(name)
    folder = Path(cfg.splits)
    mat = sio.loadmat(folder / "att_splits.mat")
    labels = realistic.assign_labels(cfg, mat, folder, np.random.default_rng(cfg.seed))
    loc = {k: np.asarray(mat[k]).reshape(-1) - 1 for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")}
    assert len(labels) == sum(len(v) for v in loc.values()) and labels.min() >= 0
    unseen = np.unique(labels[loc["test_unseen_loc"]])
    seen = np.unique(labels[loc["trainval_loc"]])
    assert len(unseen) == cfg.unseen_classes and len(seen) + len(unseen) == mat["att"].shape[1]
    assert not np.intersect1d(seen, unseen).size
    assert set(np.unique(labels[loc["test_seen_loc"]])) <= set(seen)
    if "allclasses_names" in mat and (folder / "testclasses.txt").exists():
        names = np.array([str(np.asarray(n).reshape(-1)[0]) for n in mat["allclasses_names"].reshape(-1)])
        assert sorted(names[unseen]) == sorted(class_list(folder / "testclasses.txt"))
    if "val_loc" in mat:  # the real validation images are exactly the validation classes' images
        val = np.unique(labels[np.asarray(mat["val_loc"]).reshape(-1) - 1])
        assert len(val) == cfg.val_classes
        seen_rows = np.concatenate([loc["trainval_loc"], loc["test_seen_loc"]])
        assert sorted(np.flatnonzero(np.isin(labels, val))) == sorted(np.asarray(mat["val_loc"]).reshape(-1) - 1)
        assert set(np.flatnonzero(np.isin(labels, val))) <= set(seen_rows)


def test_awa2_keeps_its_real_labels():
    cfg = shipped("SYN_AWA2")
    mat = sio.loadmat(Path(cfg.splits) / "att_splits.mat")
    labels = realistic.assign_labels(cfg, mat, Path(cfg.splits), np.random.default_rng(0))
    assert np.array_equal(labels, np.load(Path(cfg.splits) / "labels_0based.npy"))


def test_allocate_sums_exactly_with_a_minimum():
    counts = realistic._allocate(103, np.array([5.0, 1.0, 1.0, 0.01]), minimum=1)
    assert counts.sum() == 103 and counts.min() >= 1 and counts.argmax() == 0
    with pytest.raises(DataError, match="cannot give 4 classes 1 image"):
        realistic._allocate(3, np.ones(4), minimum=1)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    """SYN_CUB as the download stage writes it, and as prepare reads it."""
    folder = tmp_path_factory.mktemp("SYN_CUB")
    realistic.write_benchmark(shipped("SYN_CUB"), folder)
    return folder


def test_cub_passes_the_real_loader_with_the_real_split_sizes(cub):
    """What prepare reports for SYN_CUB: the real CUB sizes (7057 / 1764 / 2967), 2048-d."""
    check_raw(cub)
    test = prepare(cub, prepare_cfg())["test"]
    assert (len(test.train_y), len(test.test_seen_y), len(test.test_unseen_y)) == (7057, 1764, 2967)
    assert (len(test.seen), len(test.unseen), test.d_feat, test.d_att) == (150, 50, 2048, 312)
    assert (cub / "att_splits.mat").read_bytes() == (SPLITS / "CUB/att_splits.mat").read_bytes()
    assert (cub / "valclasses1.txt").exists()


def test_features_look_like_resnet_pool_features(cub):
    """Non-negative, many near-zero values, heavy right tail, mean about 0.5."""
    splits, _ = read_splits(cub)
    x, _ = read_features(cub, len(splits.att))
    assert x.shape == (11788, 2048) and x.dtype == np.float32 and x.min() >= 0
    assert abs(float(x.mean()) - 0.5) < 1e-3
    assert 0.2 < float((x < 0.05).mean()) < 0.6
    assert np.quantile(x, 0.999) > 10 * np.median(x)  # heavy-tailed, unlike a Gaussian


def test_generation_is_byte_reproducible(cub, tmp_path):
    realistic.write_benchmark(shipped("SYN_CUB"), tmp_path)
    assert (tmp_path / "res101.mat").read_bytes() == (cub / "res101.mat").read_bytes()


def _class_means(cfg: realistic.RealisticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class means (n_cls, d_feat), semantics (n_cls, d_att), seen, unseen) of a small cheap variant."""
    res, folder = realistic.make_benchmark(cfg)
    x, y = res["features"].T, res["labels"].reshape(-1) - 1
    mat = sio.loadmat(folder / "att_splits.mat")
    means = np.stack([x[y == c].mean(axis=0) for c in range(mat["att"].shape[1])])
    unseen = np.unique(y[np.asarray(mat["test_unseen_loc"]).reshape(-1) - 1])
    return means, np.asarray(mat["att"]).T, np.setdiff1d(np.arange(len(means)), unseen), unseen


@pytest.mark.parametrize("group", ["unseen", "validation"])
def test_held_out_classes_resemble_their_semantic_neighbours_through_kinship(group):
    """With kinship, an unseen class's nearest seen class in feature space is more often one
    of its nearest seen classes in semantic space; a validation class's likewise among the
    seen classes that stay in the validation split's training set (so the validation split
    poses the test split's problem)."""
    hits = {}
    for kinship in (0.0, 0.95):
        cfg = shipped("SYN_AWA1", kinship=kinship, explained=0.0, d_feat=256, noise=1.0)
        means, att, seen, unseen = _class_means(cfg)
        if group == "validation":
            folder = Path(cfg.splits)
            splits, mat = read_splits(folder)
            res, _ = realistic.make_benchmark(cfg)
            val = validation_classes(splits, mat, res["labels"].reshape(-1) - 1, folder)
            targets, sources = val, np.setdiff1d(seen, val)
        else:
            targets, sources = unseen, seen
        unit = att / np.linalg.norm(att, axis=1, keepdims=True)
        sem_nn = sources[np.argsort(-(unit[targets] @ unit[sources].T), axis=1)[:, :cfg.neighbours]]
        d = ((means[targets, None] - means[None, sources]) ** 2).sum(-1)
        feat_nn = sources[d.argmin(axis=1)]
        hits[kinship] = np.mean([f in s for f, s in zip(feat_nn, sem_nn)])
    assert hits[0.95] >= 0.8 and hits[0.0] <= 0.4, hits


def test_explained_sets_how_far_semantics_predict_the_classes():
    """Ridge regression from semantics to class means, fitted on the seen classes: the share of
    unseen-class variance it predicts grows with `explained` and stays well below 1."""
    r2 = {}
    for explained in (0.2, 0.9):
        means, att, seen, unseen = _class_means(shipped("SYN_AWA1", explained=explained, kinship=0.0,
                                                        d_feat=256, noise=1.0))
        a = np.hstack([att, np.ones((len(att), 1))])
        w = np.linalg.solve(a[seen].T @ a[seen] + 0.1 * np.eye(a.shape[1]), a[seen].T @ means[seen])
        err = ((a[unseen] @ w - means[unseen]) ** 2).sum()
        r2[explained] = 1 - err / ((means[unseen] - means[seen].mean(axis=0)) ** 2).sum()
    assert r2[0.2] < r2[0.9] < 0.95, r2


def test_within_class_variation_is_correlated():
    """The shared low-rank variation correlates feature dimensions within a class."""
    def mean_abs_corr(d_instance: int) -> float:
        res, _ = realistic.make_benchmark(shipped("SYN_APY", d_instance=d_instance, d_feat=64, instance_spread=3.0, noise=1.0))
        x, y = res["features"].T, res["labels"].reshape(-1)
        big = np.bincount(y).argmax()
        c = np.corrcoef(x[y == big].T)
        return float(np.abs(c[~np.eye(len(c), dtype=bool)]).mean())
    assert mean_abs_corr(4) > 2 * mean_abs_corr(0)


def test_a_class_list_that_disagrees_with_params_is_named(tmp_path):
    with pytest.raises(DataError, match=r"testclasses.txt lists 50 classes but unseen_classes is 40"):
        realistic.make_benchmark(shipped("SYN_CUB", unseen_classes=40))


def test_real_labels_must_agree_with_params():
    with pytest.raises(DataError, match=r"labels_0based.npy: 10 unseen classes but unseen_classes is 12"):
        realistic.make_benchmark(shipped("SYN_AWA2", unseen_classes=12))


def test_a_missing_split_folder_says_which_param_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"att_splits.mat: not found; .*realistic.splits"):
        realistic.make_benchmark(shipped("SYN_CUB", splits=str(tmp_path / "nowhere")))
