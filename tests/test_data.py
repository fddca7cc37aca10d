"""bsegn.data on tiny hand-built xlsa17 folders, and read_splits on the real split files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from bsegn.config import PrepareConfig
from bsegn.data import (
    DataError,
    validation_classes,
    check_splits,
    load_prepared,
    prepare,
    read_splits,
    save_prepared,
)
from shipped import prepare_cfg

# --------------------------------------------------------------------------- tiny dataset
#
# 6 classes (0-based ids 0..5): seen = 0, 1, 3, 4 (class 3 is the validation class),
# unseen = 2, 5. Every class has 5 images: a seen class puts 4 in trainval and 1 in
# test_seen, an unseen class all 5 in test_unseen. Images are shuffled so that no split
# is a contiguous block. The last feature dimension is the 1-based image id, so a row
# of a prepared split (with feature_scaling: none) tells which image it is.

N_CLS, D_FEAT, D_ATT, PER_CLASS = 6, 5, 3, 5
SEEN, UNSEEN, VAL = [0, 1, 3, 4], [2, 5], [3]
NAMES = [f"class_{c}" for c in range(N_CLS)]
N = N_CLS * PER_CLASS
ID_DIM = D_FEAT - 1
UNSCALED = prepare_cfg(feature_scaling="none", normalize_attributes=False, val_seen_fraction=0.25)


def tiny_dataset() -> tuple[dict, dict]:
    """The (res101, att_splits) MATLAB variables of the tiny dataset."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(N_CLS), PER_CLASS))  # 0-based
    features = rng.uniform(0.0, 3.0, size=(D_FEAT, N)).astype(np.float32)
    features[ID_DIM] = np.arange(1, N + 1)

    trainval, test_seen, test_unseen = [], [], []
    for c in range(N_CLS):
        images = list(np.flatnonzero(labels == c))
        if c in UNSEEN:
            test_unseen += images
        else:
            trainval += images[:4]
            test_seen += images[4:]
    # as in the xlsa17 release, train_loc/val_loc also hold the test_seen images
    in_val = np.isin(labels, VAL)
    is_seen = np.isin(labels, SEEN)

    def loc(indices) -> np.ndarray:
        return (np.sort(np.asarray(indices)) + 1).astype(np.int32).reshape(-1, 1)

    names = np.empty((N_CLS, 1), dtype=object)
    names[:, 0] = NAMES
    res101 = {"features": features, "labels": (labels + 1).reshape(-1, 1).astype(np.int32)}
    att_splits = {
        "att": rng.uniform(0.1, 1.0, size=(D_ATT, N_CLS)),
        "allclasses_names": names,
        "trainval_loc": loc(trainval),
        "test_seen_loc": loc(test_seen),
        "test_unseen_loc": loc(test_unseen),
        "train_loc": loc(np.flatnonzero(is_seen & ~in_val)),
        "val_loc": loc(np.flatnonzero(in_val)),
    }
    return res101, att_splits


def write_dataset(folder: Path, res101: dict, att_splits: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sio.savemat(folder / "res101.mat", res101)
    sio.savemat(folder / "att_splits.mat", att_splits)
    return folder


@pytest.fixture
def raw():
    return tiny_dataset()


@pytest.fixture
def folder(tmp_path, raw):
    return write_dataset(tmp_path / "TINY", *raw)


def image_ids(x: np.ndarray) -> set[int]:
    """0-based image indices of the rows of an unscaled split."""
    return {int(v) - 1 for v in x[:, ID_DIM]}


def loc_set(att_splits: dict, key: str) -> set[int]:
    return {int(v) - 1 for v in att_splits[key].ravel()}


# --------------------------------------------------------------------------- prepare()


def test_prepare_shapes_dtypes_and_classes(folder):
    out = prepare(folder, prepare_cfg())
    assert set(out) == {"test", "val"}
    test = out["test"]

    assert test.att.shape == (N_CLS, D_ATT)
    assert test.train_x.shape == (4 * 4, D_FEAT)
    assert test.test_seen_x.shape == (4 * 1, D_FEAT)
    assert test.test_unseen_x.shape == (2 * 5, D_FEAT)
    for name in ("att", "train_x", "test_seen_x", "test_unseen_x"):
        assert getattr(test, name).dtype == np.float32, name
    for name in ("train_y", "test_seen_y", "test_unseen_y"):
        assert getattr(test, name).dtype == np.int64, name
    assert test.seen.tolist() == SEEN
    assert test.unseen.tolist() == UNSEEN
    assert set(test.test_seen_y) == set(SEEN)
    assert set(test.test_unseen_y) == set(UNSEEN)


def test_labels_are_0_based_and_match_images(folder, raw):
    res101, _ = raw
    labels_1based = res101["labels"].ravel()
    test = prepare(folder, UNSCALED)["test"]
    for x, y in ((test.train_x, test.train_y), (test.test_seen_x, test.test_seen_y),
                 (test.test_unseen_x, test.test_unseen_y)):
        ids = (x[:, ID_DIM] - 1).astype(int)
        assert np.array_equal(y, labels_1based[ids] - 1)
    assert test.train_y.min() == 0 and test.test_unseen_y.max() == N_CLS - 1


def test_splits_hold_the_right_images(folder, raw):
    _, att_splits = raw
    test = prepare(folder, UNSCALED)["test"]
    assert image_ids(test.train_x) == loc_set(att_splits, "trainval_loc")
    assert image_ids(test.test_seen_x) == loc_set(att_splits, "test_seen_loc")
    assert image_ids(test.test_unseen_x) == loc_set(att_splits, "test_unseen_loc")


def test_minmax_is_fitted_on_the_training_split_only(tmp_path, raw):
    res101, att_splits = raw
    features = res101["features"]
    train = att_splits["trainval_loc"].ravel() - 1
    probe = int(att_splits["test_unseen_loc"][0, 0]) - 1
    # dimension 0: training images span 2..10, one unseen test image has 14
    features[0, train] = np.linspace(2.0, 10.0, len(train))
    features[0, probe] = 14.0
    test = prepare(write_dataset(tmp_path / "D", res101, att_splits), prepare_cfg())["test"]

    assert np.allclose(test.train_x.min(axis=0), 0.0)
    assert np.allclose(test.train_x.max(axis=0), 1.0)
    row = list(att_splits["test_unseen_loc"].ravel() - 1).index(probe)
    assert test.test_unseen_x[row, 0] == pytest.approx((14.0 - 2.0) / (10.0 - 2.0))  # 1.5, not clipped


def test_feature_scaling_none_leaves_features_unchanged(folder, raw):
    res101, att_splits = raw
    test = prepare(folder, UNSCALED)["test"]
    expected = res101["features"][:, att_splits["test_seen_loc"].ravel() - 1].T
    assert np.array_equal(test.test_seen_x, expected)


def test_attributes_l2_normalised(folder):
    att = prepare(folder, prepare_cfg(normalize_attributes=True))["test"].att
    assert np.allclose(np.linalg.norm(att, axis=1), 1.0, atol=1e-6)


def test_attributes_untouched_without_normalisation(folder, raw):
    _, att_splits = raw
    att = prepare(folder, prepare_cfg(normalize_attributes=False))["test"].att
    assert np.allclose(att, att_splits["att"].T)


# --------------------------------------------------------------------------- validation split


def test_val_split_uses_only_trainval_images(folder, raw):
    _, att_splits = raw
    val = prepare(folder, UNSCALED)["val"]
    trainval = loc_set(att_splits, "trainval_loc")
    train, seen_test, unseen_test = image_ids(val.train_x), image_ids(val.test_seen_x), image_ids(val.test_unseen_x)

    assert train | seen_test | unseen_test == trainval  # never a test_seen or test_unseen image
    assert not train & seen_test
    assert not (train | seen_test) & unseen_test


def test_val_unseen_classes_are_the_val_loc_classes(folder):
    val = prepare(folder, UNSCALED)["val"]
    assert val.unseen.tolist() == VAL
    assert set(val.test_unseen_y) == set(VAL)
    assert val.seen.tolist() == sorted(set(SEEN) - set(VAL))
    assert set(val.test_seen_y) == set(val.seen)  # each class holds out some images
    assert len(val.test_seen_x) == 3  # 25% of 4 trainval images, for each of 3 classes


def test_val_classes_from_class_list(tmp_path, raw):
    res101, att_splits = raw
    del att_splits["train_loc"], att_splits["val_loc"]
    folder = write_dataset(tmp_path / "D", res101, att_splits)
    (folder / "valclasses1.txt").write_text(f"{NAMES[1]}\n")

    val = prepare(folder, UNSCALED)["val"]

    assert val.unseen.tolist() == [1]
    assert 1 not in val.seen


# --------------------------------------------------------------------------- faults


def data_error(folder: Path, cfg: PrepareConfig = UNSCALED) -> str:
    with pytest.raises(DataError) as err:
        prepare(folder, cfg)
    return str(err.value)


def faulty(tmp_path: Path, raw, file: str, key: str, value) -> Path:
    """Write the tiny dataset with ``file``'s ``key`` replaced (removed if value is None)."""
    res101, att_splits = raw
    variables = res101 if file == "res101.mat" else att_splits
    if value is None:
        del variables[key]
    else:
        variables[key] = value
    return write_dataset(tmp_path / "D", res101, att_splits)


@pytest.mark.parametrize("file, key", [("res101.mat", "features"), ("res101.mat", "labels"),
                                       ("att_splits.mat", "att"), ("att_splits.mat", "test_seen_loc")])
def test_missing_key(tmp_path, raw, file, key):
    message = data_error(faulty(tmp_path, raw, file, key, None))
    assert file in message and f"missing key '{key}'" in message


def test_transposed_features(tmp_path, raw):
    features = raw[0]["features"]
    message = data_error(faulty(tmp_path, raw, "res101.mat", "features", features.T.copy()))
    assert "res101.mat" in message and "'features'" in message and "(d_feat, N)" in message


@pytest.mark.parametrize("bad_label", [0, N_CLS + 1])
def test_labels_out_of_range(tmp_path, raw, bad_label):
    labels = raw[0]["labels"].copy()
    labels[7, 0] = bad_label
    message = data_error(faulty(tmp_path, raw, "res101.mat", "labels", labels))
    assert "res101.mat" in message and "'labels'" in message


def test_loc_beyond_the_images(tmp_path, raw):
    locs = raw[1]["test_unseen_loc"].copy()
    locs[-1, 0] = N + 1
    message = data_error(faulty(tmp_path, raw, "att_splits.mat", "test_unseen_loc", locs))
    assert "att_splits.mat" in message and "'test_unseen_loc'" in message and str(N + 1) in message


def test_zero_based_locs(tmp_path, raw):
    locs = raw[1]["trainval_loc"] - 1  # contains image 0
    message = data_error(faulty(tmp_path, raw, "att_splits.mat", "trainval_loc", locs))
    assert "att_splits.mat" in message and "'trainval_loc'" in message and "1-based" in message


def test_val_loc_beyond_the_images(tmp_path, raw):
    locs = raw[1]["val_loc"].copy()
    locs[0, 0] = N + 5
    message = data_error(faulty(tmp_path, raw, "att_splits.mat", "val_loc", locs))
    assert "att_splits.mat" in message and "'val_loc'" in message


def test_overlapping_trainval_and_test_unseen(tmp_path, raw):
    shared = raw[1]["test_unseen_loc"][:1]
    locs = np.vstack([raw[1]["trainval_loc"], shared])
    message = data_error(faulty(tmp_path, raw, "att_splits.mat", "trainval_loc", locs))
    assert "att_splits.mat" in message and "'trainval_loc' and 'test_unseen_loc' overlap" in message


def test_class_in_trainval_and_test_unseen(tmp_path, raw):
    _, att_splits = raw
    moved = att_splits["test_unseen_loc"][:1]  # one unseen-class image moves to trainval
    att_splits["test_unseen_loc"] = att_splits["test_unseen_loc"][1:]
    att_splits["trainval_loc"] = np.vstack([att_splits["trainval_loc"], moved])
    message = data_error(write_dataset(tmp_path / "D", *raw))
    assert "att_splits.mat" in message and "trainval_loc and test_unseen_loc" in message


def test_repeated_index(tmp_path, raw):
    locs = raw[1]["test_seen_loc"].copy()
    locs[1, 0] = locs[0, 0]
    message = data_error(faulty(tmp_path, raw, "att_splits.mat", "test_seen_loc", locs))
    assert "att_splits.mat" in message and "'test_seen_loc' repeats" in message


@pytest.mark.parametrize("file", ["res101.mat", "att_splits.mat"])
def test_corrupt_mat_file(folder, file):
    (folder / file).write_bytes(b"\x00garbage, not MATLAB\xff" * 50)
    message = data_error(folder)
    assert file in message and "not a readable MATLAB file" in message


@pytest.mark.parametrize("file", ["res101.mat", "att_splits.mat"])
def test_missing_file(folder, file):
    (folder / file).unlink()
    message = data_error(folder)
    assert file in message and "not found" in message


def test_nan_features(tmp_path, raw):
    features = raw[0]["features"].copy()
    features[2, 3] = np.nan
    message = data_error(faulty(tmp_path, raw, "res101.mat", "features", features))
    assert "res101.mat" in message and "'features'" in message and "NaN" in message


def test_no_validation_split(tmp_path, raw):
    del raw[1]["train_loc"], raw[1]["val_loc"]
    folder = write_dataset(tmp_path / "D", *raw)
    message = data_error(folder)
    assert str(folder) in message and "val_loc" in message and "valclasses1.txt" in message


def test_unknown_class_in_class_list(tmp_path, raw):
    del raw[1]["train_loc"], raw[1]["val_loc"]
    folder = write_dataset(tmp_path / "D", *raw)
    (folder / "valclasses1.txt").write_text("no_such_class\n")
    message = data_error(folder)
    assert "valclasses1.txt" in message and "no_such_class" in message


# --------------------------------------------------------------------------- save / load


def test_save_and_load_prepared_round_trip(tmp_path, folder):
    prepared = prepare(folder, prepare_cfg())
    path = tmp_path / "prepared.npz"
    save_prepared(path, prepared)
    for split in ("test", "val"):
        loaded = load_prepared(path, split)
        for f in dataclasses.fields(loaded):
            expected, got = getattr(prepared[split], f.name), getattr(loaded, f.name)
            assert got.dtype == expected.dtype and np.array_equal(got, expected), (split, f.name)


def test_load_prepared_unknown_split(tmp_path, folder):
    path = tmp_path / "prepared.npz"
    save_prepared(path, prepare(folder, prepare_cfg()))
    with pytest.raises(DataError, match="no split 'train'"):
        load_prepared(path, "train")


# --------------------------------------------------------------------------- real split files

REAL_SPLITS = Path(__file__).resolve().parents[1].parent / "shared/data/xlsa17-splits"
# from REAL_SPLITS/README.md: (d_att, n_classes), trainval, test_seen, test_unseen
REAL_SIZES = {
    "APY": ((64, 32), 5932, 1483, 7924),
    "AWA1": ((85, 50), 19832, 4958, 5685),
    "AWA2": ((85, 50), 23527, 5882, 7913),
    "CUB": ((312, 200), 7057, 1764, 2967),
    "FLO": ((1024, 102), 5631, 1403, 1155),
    "SUN": ((102, 717), 10320, 2580, 1440),
}


def real_folder(name: str) -> Path:
    folder = REAL_SPLITS / name
    if not (folder / "att_splits.mat").exists():
        pytest.skip(f"real split files {folder} not found")
    return folder


@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_read_real_splits(name):
    (d_att, n_cls), n_trainval, n_test_seen, n_test_unseen = REAL_SIZES[name]
    splits, _ = read_splits(real_folder(name))

    assert splits.att.shape == (n_cls, d_att)
    assert (len(splits.trainval), len(splits.test_seen), len(splits.test_unseen)) == (
        n_trainval, n_test_seen, n_test_unseen)
    n_images = n_trainval + n_test_seen + n_test_unseen
    everything = np.concatenate([splits.trainval, splits.test_seen, splits.test_unseen])
    assert np.array_equal(np.sort(everything), np.arange(n_images))  # disjoint, covering 0..N-1


def test_real_awa2_splits_with_labels():
    folder = real_folder("AWA2")
    labels_file = folder / "labels_0based.npy"
    if not labels_file.exists():
        pytest.skip(f"{labels_file} not found")
    labels = np.load(labels_file).astype(np.int64)
    splits, mat = read_splits(folder)

    seen, unseen = check_splits(splits, labels, folder / "att_splits.mat")
    assert (len(seen), len(unseen)) == (40, 10)

    val_classes = validation_classes(splits, mat, labels, folder)  # derived from val_loc
    assert 0 < len(val_classes) < len(seen)
    assert np.isin(val_classes, seen).all()
