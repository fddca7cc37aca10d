"""bsegn.synthetic: deterministic, in the exact xlsa17 layout, and data-like."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio

from bsegn.data import prepare
from bsegn.synthetic import make_benchmark, write_benchmark
from shipped import prepare_cfg, synthetic_cfg

CFG = synthetic_cfg("SYN")  # the benchmarks of params.yaml
SHIFTED = synthetic_cfg("SYN_SHIFT")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """CFG written to disk and read back with scipy: (folder, res101, att_splits)."""
    folder = tmp_path_factory.mktemp("SYN")
    write_benchmark(CFG, folder)
    return folder, sio.loadmat(folder / "res101.mat"), sio.loadmat(folder / "att_splits.mat")


def arrays_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and (a[k].tolist() == b[k].tolist() if a[k].dtype == object else a[k].tobytes() == b[k].tobytes())
        for k in a
    )


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_identical_arrays():
    first, second = make_benchmark(CFG), make_benchmark(synthetic_cfg(seed=0))
    assert arrays_equal(first[0], second[0])
    assert arrays_equal(first[1], second[1])


def test_other_seed_gives_other_data():
    res_0, splits_0 = make_benchmark(CFG)
    res_1, splits_1 = make_benchmark(synthetic_cfg(seed=1))
    assert not np.array_equal(res_0["features"], res_1["features"])
    assert not np.array_equal(splits_0["att"], splits_1["att"])


def test_n_val_must_be_below_n_seen():
    with pytest.raises(ValueError, match="n_val"):
        make_benchmark(synthetic_cfg(n_seen=4, n_val=4))


# --------------------------------------------------------------------------- xlsa17 layout


def test_written_files_have_the_xlsa17_keys_and_shapes(written):
    _, res101, att_splits = written
    n_cls = CFG.n_seen + CFG.n_unseen
    features, labels = res101["features"], res101["labels"]
    n_images = features.shape[1]

    assert features.shape == (CFG.d_feat, n_images)
    assert labels.shape == (n_images, 1)
    assert labels.min() == 1 and labels.max() == n_cls  # 1-based
    assert att_splits["att"].shape == (CFG.d_att, n_cls)
    assert att_splits["allclasses_names"].shape == (n_cls, 1)
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"):
        assert att_splits[key].ndim == 2 and att_splits[key].shape[1] == 1, key
        assert att_splits[key].min() >= 1, key


def test_features_non_negative(written):
    assert written[1]["features"].min() >= 0.0


def test_splits_disjoint_and_covering(written):
    _, res101, att_splits = written
    n_images = res101["features"].shape[1]
    locs = np.concatenate([att_splits[k].ravel() for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")])
    assert np.array_equal(np.sort(locs), np.arange(1, n_images + 1))


def test_unseen_classes(written):
    _, res101, att_splits = written
    labels = res101["labels"].ravel()
    unseen = np.unique(labels[att_splits["test_unseen_loc"].ravel() - 1])
    seen = np.unique(labels[att_splits["trainval_loc"].ravel() - 1])
    assert len(unseen) == CFG.n_unseen
    assert len(seen) == CFG.n_seen
    assert not np.intersect1d(seen, unseen).size


def test_att_columns_unit_norm(written):
    assert np.allclose(np.linalg.norm(written[2]["att"], axis=0), 1.0)


def test_written_folder_prepares(written):
    folder = written[0]
    out = prepare(folder, prepare_cfg())
    test, val = out["test"], out["val"]
    assert (len(test.seen), len(test.unseen)) == (CFG.n_seen, CFG.n_unseen)
    assert test.d_feat == CFG.d_feat and test.d_att == CFG.d_att
    assert len(val.unseen) == CFG.n_val
    assert np.isin(val.unseen, test.seen).all()


# --------------------------------------------------------------------------- data-like


def class_means(features: np.ndarray, labels: np.ndarray, classes) -> np.ndarray:
    return np.stack([features[labels == c].mean(axis=0) for c in classes])


@pytest.mark.parametrize("cfg", [CFG, SHIFTED], ids=["SYN", "SYN_SHIFT"])
def test_features_depend_on_classes(cfg):
    """Nearest class mean over the unseen classes, means from one half, tested on the other."""
    res101, att_splits = make_benchmark(cfg)
    images = att_splits["test_unseen_loc"].ravel() - 1
    x, y = res101["features"].T[images], res101["labels"].ravel()[images]
    half = np.arange(len(images)) % 2 == 0
    classes = np.unique(y)

    means = class_means(x[half], y[half], classes)
    dist = ((x[~half, None, :] - means[None]) ** 2).sum(axis=-1)
    accuracy = np.mean(classes[dist.argmin(axis=1)] == y[~half])

    chance = 1.0 / len(classes)
    assert accuracy > 3 * chance


@pytest.mark.parametrize("cfg", [CFG, SHIFTED], ids=["SYN", "SYN_SHIFT"])
def test_attributes_predict_unseen_feature_means(cfg):
    """Ridge regression attributes -> class-mean features, fitted on seen classes only,
    predicts the unseen class means better than the seen classes' global mean (R^2 > 0)."""
    res101, att_splits = make_benchmark(cfg)
    x, y = res101["features"].T, res101["labels"].ravel() - 1
    att = att_splits["att"].T  # (n_cls, d_att)
    unseen = np.unique(y[att_splits["test_unseen_loc"].ravel() - 1])
    seen = np.setdiff1d(np.arange(len(att)), unseen)
    means = class_means(x, y, np.arange(len(att)))

    a_centre, m_centre = att[seen].mean(axis=0), means[seen].mean(axis=0)
    a_seen = att[seen] - a_centre
    ridge = 1.0
    w = np.linalg.solve(a_seen.T @ a_seen + ridge * np.eye(att.shape[1]), a_seen.T @ (means[seen] - m_centre))
    predicted = m_centre + (att[unseen] - a_centre) @ w

    r2 = 1.0 - ((predicted - means[unseen]) ** 2).sum() / ((m_centre - means[unseen]) ** 2).sum()
    assert r2 > 0.0


def test_written_files_are_byte_identical_across_runs(tmp_path):
    """Same config -> same bytes, so DVC hashes match across machines and reruns."""
    from bsegn.synthetic import write_benchmark

    cfg = synthetic_cfg(seed=5, n_seen=6, n_unseen=3, n_val=2, per_class=12, d_feat=8, d_att=4)
    write_benchmark(cfg, tmp_path / "a")
    write_benchmark(cfg, tmp_path / "b")
    for name in ("res101.mat", "att_splits.mat"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
