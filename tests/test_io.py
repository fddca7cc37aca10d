"""bsegn.io: atomic writers leave either the old content or nothing, never a temp file."""

from __future__ import annotations


import numpy as np
import pytest

from bsegn.io import atomic_dir, atomic_path, load_npz, save_npz


class Boom(Exception):
    pass


def test_atomic_path_writes_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_leaves_nothing_when_the_body_raises(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise Boom
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp file


def test_atomic_path_keeps_old_content_when_the_body_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise Boom
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "fresh.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["fresh.txt"]
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_leaves_nothing_when_the_body_raises(tmp_path):
    target = tmp_path / "folder"
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "part.txt").write_text("half")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_old_content_when_the_body_raises(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "part.txt").write_text("half")
            raise Boom
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("name", ["prepared.npz", "prepared", "features.bin"])
def test_save_npz_writes_exactly_the_given_name(tmp_path, name):
    arrays = {"a": np.arange(5, dtype=np.int64), "test/x": np.eye(2, dtype=np.float32)}
    save_npz(tmp_path / name, **arrays)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no extra ".npz", no temp file
    loaded = load_npz(tmp_path / name)
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value)


def test_outputs_follow_the_users_umask(tmp_path):
    import os

    from bsegn.io import atomic_dir, save_json
    old = os.umask(0o022)
    try:
        save_json({"a": 1}, tmp_path / "f.json")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
        os.umask(0o077)
        save_json({"a": 1}, tmp_path / "private.json")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
