"""Malformed benchmark files get one clear line (a DataError), never a traceback.

Hypothesis takes a valid tiny benchmark and breaks one thing in it: truncates a file, or
replaces a variable by a wrong dtype, NaN, zero or negative indices, labels out of range,
a transposed or empty matrix, or removes it. Loading must then either still work (some
changes are harmless, such as an index vector stored as a row) or raise DataError with a
one-line message.
"""

from pathlib import Path

import numpy as np
import scipy.io as sio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bsegn.data import DataError, prepare
from bsegn.synthetic import make_benchmark
from shipped import prepare_cfg, synthetic_cfg

TINY = synthetic_cfg(seed=5, n_seen=6, n_unseen=3, n_val=2, per_class=12, d_att=4, d_latent=3, d_feat=8)
RES101, ATT_SPLITS = make_benchmark(TINY)
KEYS = {"res101.mat": ["features", "labels"],
        "att_splits.mat": ["att", "trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"]}


def corrupt(value: np.ndarray, how: str, data) -> np.ndarray | None:
    """``value`` broken in the way ``how`` names (None: remove the variable)."""
    v = np.array(value)
    if how == "remove":
        return None
    if how == "transpose":
        return v.T
    if how == "empty":
        return v[:0]
    if how == "strings":
        return np.array([["x"] * v.shape[1]] * v.shape[0], dtype=object) if v.ndim == 2 else np.array(["x"])
    if how == "complex":
        return v.astype(np.complex128) + 1j
    if how == "bool":
        return v.astype(bool)
    flat = v.astype(np.float64).reshape(-1)
    i = data.draw(st.integers(0, len(flat) - 1), label="position")
    if how == "nan":
        flat[i] = np.nan
    elif how == "inf":
        flat[i] = np.inf
    elif how == "zero":
        flat[i] = 0
    elif how == "negative":
        flat[i] = -data.draw(st.integers(1, 10 ** 6), label="negative")
    elif how == "huge":
        flat[i] = data.draw(st.integers(10 ** 4, 10 ** 9), label="huge")
    elif how == "fraction":
        flat[i] += 0.5
    return flat.reshape(v.shape)


def write(folder: Path, name: str, variables: dict) -> None:
    sio.savemat(folder / name, {k: v for k, v in variables.items() if v is not None})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_broken_benchmark_files_give_one_line_errors(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    files = {"res101.mat": dict(RES101), "att_splits.mat": dict(ATT_SPLITS)}
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    how = data.draw(st.sampled_from(["truncate", "remove", "transpose", "empty", "strings", "complex", "bool",
                                     "nan", "inf", "zero", "negative", "huge", "fraction"]), label="how")
    if how != "truncate":
        key = data.draw(st.sampled_from(KEYS[name]), label="key")
        files[name][key] = corrupt(files[name][key], how, data)
    for file, variables in files.items():
        write(folder, file, variables)
    if how == "truncate":
        raw = (folder / name).read_bytes()
        (folder / name).write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1), label="length")])
    try:
        prepared = prepare(folder, prepare_cfg())
    except DataError as err:
        message = str(err)
        assert message and "\n" not in message, message
        assert str(folder) in message  # names the file or folder
        return
    for bench in prepared.values():  # what loads must be usable
        assert np.isfinite(bench.train_x).all() and len(bench.seen) and len(bench.unseen)


def test_the_untouched_benchmark_loads(tmp_path):
    write(tmp_path, "res101.mat", RES101)
    write(tmp_path, "att_splits.mat", ATT_SPLITS)
    assert set(prepare(tmp_path, prepare_cfg())) == {"test", "val"}
