"""bsegn.download against a local HTTP server on 127.0.0.1 and tiny fake archives."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

from bsegn import download
from bsegn.config import SourceConfig
from bsegn.download import DownloadError, fetch_dataset
from bsegn.synthetic import write_benchmark
from shipped import synthetic_cfg

def _tiny_benchmark() -> dict[str, bytes]:
    """Valid xlsa17 files of a tiny synthetic benchmark: fetch_dataset checks what it writes."""
    with tempfile.TemporaryDirectory() as tmp:
        write_benchmark(synthetic_cfg(seed=2, n_seen=6, n_unseen=3, n_val=2, per_class=40, d_att=5,
                                        d_latent=3, d_feat=64), tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in ("res101.mat", "att_splits.mat")}


FILES = {
    **_tiny_benchmark(),
    "allclasses.txt": b"001.Albatross\n002.Auklet\n",  # copied as is; att_splits.mat's own names win
    "testclasses.txt": b"002.Auklet\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(path: Path, datasets=("CUB", "AWA1")) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for ds in datasets:
            for name, data in FILES.items():
                zf.writestr(f"xlsa17/data/{ds}/{name}", data)
            zf.writestr(f"xlsa17/data/{ds}/README.md", b"not copied")
    return path


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.body`` with Range support; ``server.mode`` picks a misbehaviour."""

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if srv.mode == "404":
            return self.send_error(404)
        body = srv.body
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.mode != "ignore_range":
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.mode == "cut" and len(srv.requests) == 1:
            payload = payload[: srv.cut_after]  # promise the whole body, then hang up
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.body, srv.mode, srv.cut_after, srv.requests = b"", "ok", 0, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/xlsa17.zip"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)


def fetch(dataset, source, tmp_path, **kw):
    kw.setdefault("timeout_s", 5.0)
    return fetch_dataset(dataset, source, tmp_path / "out" / dataset, tmp_path / "cache", **kw)


def _cached(tmp_path: Path, server, suffix: str = "") -> Path:
    """The cache file of the test server's archive (``suffix``: its .sha256 or .part beside it)."""
    path = download.cached_archive(tmp_path / "cache", server.url)
    return path.with_name(path.name + suffix)


def assert_extracted(out: Path):
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert not (out / "README.md").exists()


# --------------------------------------------------------------------------- url


def test_url_download_extracts_and_records_provenance(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    info = fetch("CUB", SourceConfig(kind="url", url=server.url, sha256=sha(server.body)), tmp_path)
    out = tmp_path / "out" / "CUB"
    assert_extracted(out)
    assert json.loads((out / "source.json").read_text()) == info
    assert info["dataset"] == "CUB" and info["kind"] == "url" and info["url"] == server.url
    assert info["archive_sha256"] == sha(server.body)
    assert info["files"] == {name: sha(data) for name, data in FILES.items()}
    assert info["found_in"] == "xlsa17/data/CUB"
    cached = _cached(tmp_path, server)
    assert cached.read_bytes() == server.body
    assert (_cached(tmp_path, server, ".sha256")).read_text().split()[0] == sha(server.body)
    assert not (_cached(tmp_path, server, ".part")).exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    server.mode, server.cut_after = "cut", len(server.body) // 3
    fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path, retries=2)
    assert [r["range"] for r in server.requests] == [None, f"bytes={server.cut_after}-"]
    assert (_cached(tmp_path, server)).read_bytes() == server.body
    assert_extracted(tmp_path / "out" / "CUB")


def test_interruption_without_retries_keeps_part_for_next_run(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    server.mode, server.cut_after = "cut", 1000
    with pytest.raises(DownloadError, match="interrupted"):
        fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path, retries=0)
    assert (_cached(tmp_path, server, ".part")).stat().st_size == 1000
    assert not (tmp_path / "out" / "CUB").exists()
    fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path, retries=0)
    assert server.requests[-1]["range"] == "bytes=1000-"
    assert (_cached(tmp_path, server)).read_bytes() == server.body


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    server.mode = "ignore_range"
    _cached(tmp_path, server).parent.mkdir(parents=True)
    (_cached(tmp_path, server, ".part")).write_bytes(b"stale bytes from elsewhere")
    fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path)
    assert server.requests[0]["range"] == "bytes=26-"
    assert (_cached(tmp_path, server)).read_bytes() == server.body


def test_complete_part_answered_416_is_used(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    _cached(tmp_path, server).parent.mkdir(parents=True)
    (_cached(tmp_path, server, ".part")).write_bytes(server.body)
    fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path)
    assert len(server.requests) == 1
    assert (_cached(tmp_path, server)).read_bytes() == server.body


def test_archive_is_fetched_once_for_two_datasets(server, tmp_path, monkeypatch):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    fetch("AWA1", SourceConfig(kind="url", url=server.url), tmp_path)
    hashed = []
    monkeypatch.setattr(download, "sha256_file", lambda p: hashed.append(p.name) or "x")
    info = fetch("CUB", SourceConfig(kind="url", url=server.url, sha256=sha(server.body)), tmp_path)
    assert len(server.requests) == 1
    assert "xlsa17.zip" not in hashed  # the recorded digest was reused, not recomputed
    assert info["archive_sha256"] == sha(server.body)
    assert_extracted(tmp_path / "out" / "AWA1")
    assert_extracted(tmp_path / "out" / "CUB")


def test_a_same_named_archive_from_another_server_is_fetched_not_taken_from_the_cache(server, tmp_path):
    """The cache is keyed by the whole URL: another address serving an `xlsa17.zip` is asked for
    its own bytes, and source.json records the address they came from."""
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path)
    other = server.url.replace("/xlsa17.zip", "/mirror/xlsa17.zip")
    info = fetch("AWA1", SourceConfig(kind="url", url=other), tmp_path)
    assert len(server.requests) == 2 and info["url"] == other
    assert download.cached_archive(tmp_path / "cache", other) != _cached(tmp_path, server)
    assert json.loads((tmp_path / "out" / "AWA1" / "source.json").read_text())["url"] == other


def test_a_server_that_never_answers_is_reported_per_attempt(tmp_path, capsys):
    """A server that accepts the connection and never answers: each attempt ends after
    download.timeout_s with a line saying what happens next (it used to be silent for 255 s)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/xlsa17.zip"
    try:
        with pytest.raises(DownloadError, match=r"did not answer within download.timeout_s=0.3 s after 2 attempt\(s\)"):
            fetch("CUB", SourceConfig(kind="url", url=url), tmp_path, timeout_s=0.3, retries=1)
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert f"download CUB: {url}:" in err and "attempt 2 of 2" in err and "download.timeout_s=0.3" in err


def test_pinned_sha256_mismatch_removes_download(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip").read_bytes()
    with pytest.raises(DownloadError) as err:
        fetch("CUB", SourceConfig(kind="url", url=server.url, sha256="0" * 64), tmp_path)
    assert "0" * 64 in str(err.value) and sha(server.body) in str(err.value)
    assert not (tmp_path / "out" / "CUB").exists()
    assert not list(_cached(tmp_path, server).parent.glob("xlsa17.zip*"))


@pytest.mark.parametrize("body", ["garbage", "truncated"])
def test_bad_archive_is_rejected_and_not_cached(server, tmp_path, body):
    good = make_zip(tmp_path / "src.zip").read_bytes()
    server.body = b"<html>not a zip</html>" * 100 if body == "garbage" else good[: len(good) - 200]
    with pytest.raises(DownloadError, match="not a readable zip"):
        fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path)
    assert not (tmp_path / "out" / "CUB").exists()
    assert not list(_cached(tmp_path, server).parent.glob("xlsa17.zip*"))
    assert not list((tmp_path / "out").iterdir())  # no temporary folder left behind either


def test_archive_without_the_dataset(server, tmp_path):
    server.body = make_zip(tmp_path / "src.zip", datasets=("AWA1",)).read_bytes()
    with pytest.raises(DownloadError, match="SUN.*no folder named SUN"):
        fetch("SUN", SourceConfig(kind="url", url=server.url), tmp_path)
    assert not (tmp_path / "out" / "SUN").exists()


def test_http_404(server, tmp_path):
    server.mode = "404"
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch("CUB", SourceConfig(kind="url", url=server.url), tmp_path)
    assert len(server.requests) == 1  # a client error is not retried


def test_unreachable_url_suggests_local_archive(tmp_path):
    with socket.socket() as s:  # a port that was just free: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/xlsa17.zip"
    with pytest.raises(DownloadError) as err:
        fetch("CUB", SourceConfig(kind="url", url=url), tmp_path, retries=1)
    msg = str(err.value)
    assert "could not be reached" in msg and url in msg
    assert "download.sources.CUB.kind: archive" in msg and "/path/to/xlsa17.zip" in msg
    assert not (tmp_path / "out" / "CUB").exists()



def test_unresolvable_host_fails_at_once(tmp_path):
    """Offline (or a typo in the host): no retries, one line saying how to use a local archive."""
    url = "http://benchmarks.example.invalid/xlsa17.zip"  # .invalid never resolves (RFC 2606)
    with pytest.raises(DownloadError) as err:
        fetch("CUB", SourceConfig(kind="url", url=url), tmp_path, retries=3)
    msg = str(err.value)
    assert "could not be reached after 1 attempt(s)" in msg and "download.sources.CUB.kind: archive" in msg
    assert "\n" not in msg


# --------------------------------------------------------------------------- local


def test_local_archive(tmp_path):
    archive = make_zip(tmp_path / "xlsa17.zip")
    digest = sha(archive.read_bytes())
    info = fetch("AWA1", SourceConfig(kind="archive", path=str(archive), sha256=digest), tmp_path)
    assert_extracted(tmp_path / "out" / "AWA1")
    assert info["kind"] == "archive" and info["path"] == str(archive) and info["archive_sha256"] == digest
    with pytest.raises(DownloadError, match="expected " + "1" * 64):
        fetch("CUB", SourceConfig(kind="archive", path=str(archive), sha256="1" * 64), tmp_path)
    assert archive.exists()  # the user's own file is never deleted


def test_local_archive_lowercase_folder_name_matches(tmp_path):
    archive = tmp_path / "cvpr18xian.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(f"cvpr18xian/data/flo/{name}", data)
    fetch("FLO", SourceConfig(kind="archive", path=str(archive)), tmp_path)
    assert_extracted(tmp_path / "out" / "FLO")


def test_folder_with_dataset_subfolder(tmp_path):
    make_zip(tmp_path / "src.zip")
    with zipfile.ZipFile(tmp_path / "src.zip") as zf:
        zf.extractall(tmp_path / "tree")
    info = fetch("CUB", SourceConfig(kind="folder", path=str(tmp_path / "tree")), tmp_path)
    assert_extracted(tmp_path / "out" / "CUB")
    assert info["found_in"] == "xlsa17/data/CUB" and "archive_sha256" not in info


def test_folder_holding_the_files_directly(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    info = fetch("SUN", SourceConfig(kind="folder", path=str(folder)), tmp_path)
    assert_extracted(tmp_path / "out" / "SUN")
    assert info["files"]["res101.mat"] == sha(FILES["res101.mat"])


@pytest.mark.parametrize("kind", ["archive", "folder"])
def test_missing_local_path(tmp_path, kind):
    missing = tmp_path / "nowhere" / "xlsa17.zip"
    with pytest.raises(DownloadError, match=f"CUB.*{missing}"):
        fetch("CUB", SourceConfig(kind=kind, path=str(missing)), tmp_path)
    assert not (tmp_path / "out" / "CUB").exists()


def test_folder_without_the_dataset(tmp_path):
    (tmp_path / "tree" / "AWA2").mkdir(parents=True)
    with pytest.raises(DownloadError, match="no folder named CUB"):
        fetch("CUB", SourceConfig(kind="folder", path=str(tmp_path / "tree")), tmp_path)


def test_invalid_mat_files_never_become_an_output(tmp_path):
    """A zip holding a broken att_splits.mat: download fails with one line, writes nothing."""
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("xlsa17/data/CUB/res101.mat", FILES["res101.mat"])
        zf.writestr("xlsa17/data/CUB/att_splits.mat", b"not a MATLAB file " * 50)
    out = tmp_path / "out" / "CUB"
    with pytest.raises(DownloadError, match=r"CUB: the files from .*bad.zip are not a valid benchmark: .*out/CUB/att_splits.mat"):
        fetch_dataset("CUB", SourceConfig(kind="archive", path=str(archive)), out, tmp_path / "cache")
    assert not out.exists() and not list(out.parent.glob(".*"))
