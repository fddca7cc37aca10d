"""Obtain one benchmark's raw files (``res101.mat``, ``att_splits.mat``, class lists).

The official archives are large (xlsa17.zip is ~879 MB) and hold several datasets, so a
download goes to a shared cache, resumes after an interruption, is verified before it
is given its final name, and is fetched only once for all the datasets inside it.
The output folder is built atomically: a failure leaves nothing at ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import posixpath
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from bsegn.config import SourceConfig
from bsegn.data import DataError, check_raw
from bsegn.errors import PipelineError
from bsegn.io import atomic_dir, atomic_path, save_json
from bsegn.progress import Progress
from bsegn.realistic import write_benchmark as write_realistic
from bsegn.synthetic import write_benchmark

REQUIRED = ("res101.mat", "att_splits.mat")
CLASS_LISTS = ("allclasses.txt", "trainclasses1.txt", "valclasses1.txt", "trainvalclasses.txt", "testclasses.txt")
CHUNK = 1 << 20
RETRY_DELAY_S = 2.0  # multiplied by the attempt number; tests set it to 0


class DownloadError(PipelineError, RuntimeError):
    """A dataset's files could not be obtained or did not pass verification."""


class CorruptArchiveError(DownloadError):
    """The archive is not a readable zip (truncated, garbage, bad CRC)."""


def fetch_dataset(dataset: str, source: SourceConfig, out_dir: Path, cache_dir: Path,
                  timeout_s: float = 60.0, retries: int = 3) -> dict:
    """Write ``out_dir`` with the dataset's files and ``source.json``; return the provenance."""
    info: dict = {"dataset": dataset, "kind": source.kind}
    with atomic_dir(out_dir) as tmp:
        if source.kind == "url":
            archive, digest = download_archive(dataset, source.url, Path(cache_dir), source.sha256, timeout_s, retries)
            info.update(url=source.url, archive_sha256=digest)
            try:
                info["found_in"] = copy_from_zip(dataset, archive, tmp)
            except CorruptArchiveError:
                # the cached copy is bad after all (e.g. a CRC error): make the next run refetch it
                archive.unlink(missing_ok=True)
                _sidecar(archive).unlink(missing_ok=True)
                raise
        elif source.kind == "archive":
            archive = Path(source.path)
            if not archive.is_file():
                raise DownloadError(f"{dataset}: local archive {archive} does not exist; expected the benchmark .zip "
                                    f"(download.sources.{dataset}.path)")
            info.update(path=source.path, archive_sha256=_check_pin(dataset, archive, sha256_file(archive), source.sha256))
            info["found_in"] = copy_from_zip(dataset, archive, tmp)
        elif source.kind == "folder":
            info.update(path=source.path, found_in=copy_from_folder(dataset, Path(source.path), tmp))
        elif source.kind == "synthetic" and source.realistic is not None:
            write_realistic(source.realistic, tmp)
            info["realistic"] = dataclasses.asdict(source.realistic)
            info["split_files"] = {p.name: sha256_file(p) for p in sorted(Path(source.realistic.splits).iterdir())}
        elif source.kind == "synthetic":
            write_benchmark(source.synthetic, tmp)
            info["synthetic"] = dataclasses.asdict(source.synthetic)
        else:
            raise DownloadError(f"{dataset}: unknown source kind {source.kind!r}; expected url, archive, folder or synthetic")
        try:  # bad raw files must never reach dvc.lock or the cache
            info["checked"] = check_raw(tmp)
        except DataError as exc:
            raise DownloadError(f"{dataset}: the files from {_where(source)} are not a valid benchmark: "
                                + str(exc).replace(str(tmp), str(out_dir))) from None
        info["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        save_json(info, tmp / "source.json")
    return info


def _where(source: SourceConfig) -> str:
    return {"url": source.url, "archive": source.path, "folder": source.path}.get(source.kind) or f"kind {source.kind}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_pin(dataset: str, archive: Path, actual: str, expected: str | None) -> str:
    if expected and actual != expected.lower():
        raise DownloadError(f"{dataset}: SHA-256 of {archive} is {actual}, expected {expected.lower()} "
                            f"(download.sources.{dataset}.sha256)")
    return actual


def _sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


# --------------------------------------------------------------------------- url


def cached_archive(cache_dir: Path, url: str) -> Path:
    """Where ``url``'s archive is cached: a folder per address (its host and a digest of the
    whole URL), so an archive of the same name from another server is never taken for it."""
    parsed = urllib.parse.urlparse(url)
    key = f"{parsed.hostname or 'local'}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
    return cache_dir / key / (posixpath.basename(parsed.path) or "archive.zip")


def download_archive(dataset: str, url: str, cache_dir: Path, sha256: str | None = None,
                     timeout_s: float = 60.0, retries: int = 3) -> tuple[Path, str]:
    """The verified archive at ``url`` in ``cache_dir`` and its SHA-256, downloading it if needed."""
    final = cached_archive(cache_dir, url)
    sidecar = _sidecar(final)
    if final.is_file():
        # the recorded digest spares re-hashing 879 MB for every dataset in the archive
        digest = sidecar.read_text().split()[0] if sidecar.is_file() else sha256_file(final)
        if not sha256 or digest == sha256.lower():
            if not sidecar.is_file():
                _save_sidecar(sidecar, digest)
            return final, digest
        final.unlink()  # a different archive than the pinned one: fetch again
        sidecar.unlink(missing_ok=True)
    part = final.with_name(final.name + ".part")
    final.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _stream(url, part, timeout_s)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == retries:
                raise DownloadError(f"{dataset}: {url} answered HTTP {exc.code} {exc.reason}; expected the "
                                    f"benchmark zip. {_local_hint(dataset, final.name)}") from None
        except (OSError, http.client.HTTPException) as exc:
            # a host name that does not resolve means no network (or a typo): retrying only delays
            offline = isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, socket.gaierror)
            if attempt == retries or offline:
                what = ("could not be reached" if isinstance(exc, urllib.error.URLError)
                        else f"did not answer within download.timeout_s={timeout_s:g} s" if isinstance(exc, TimeoutError)
                        else "download was interrupted")
                resume = f" Rerunning resumes from {part}." if part.exists() else ""
                raise DownloadError(f"{dataset}: {url} {what} after {attempt + 1} attempt(s) ({exc}).{resume} "
                                    f"{_local_hint(dataset, final.name)}") from None
            print(f"download {dataset}: {url}: {exc}; attempt {attempt + 2} of {retries + 1} in "
                  f"{RETRY_DELAY_S * (attempt + 1):g} s (download.timeout_s={timeout_s:g}, retries={retries})",
                  file=sys.stderr, flush=True)
        time.sleep(RETRY_DELAY_S * (attempt + 1))
    try:  # a complete but bad download is deleted so that the next run starts afresh
        _open_zip(dataset, part).close()
        digest = _check_pin(dataset, part, sha256_file(part), sha256)
    except DownloadError:
        part.unlink()
        raise
    _save_sidecar(sidecar, digest)
    part.replace(final)
    return final, digest


def _save_sidecar(sidecar: Path, digest: str) -> None:
    with atomic_path(sidecar) as tmp:  # sha256sum format, so `sha256sum -c` can check the cache
        tmp.write_text(f"{digest}  {sidecar.name[:-len('.sha256')]}\n")


def _local_hint(dataset: str, name: str) -> str:
    return (f"To use a local copy instead, set download.sources.{dataset}.kind: archive and path: /path/to/{name} "
            f"(or kind: folder and path: an extracted tree) in params.yaml")


def _stream(url: str, part: Path, timeout_s: float) -> None:
    """Append the rest of ``url`` to ``part``; raise ConnectionError if the body ends early."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:
            raise
        # the range starts at or past the end: .part is either complete or from another file
        total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
        if total == str(offset):
            return
        part.unlink()
        return _stream(url, part, timeout_s)
    with resp:
        if resp.status != 206:
            offset = 0  # the server ignored the Range header and sends the whole file
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as fh, Progress(f"download {part.name[:-5]}", total, "B") as bar:
            bar.update(offset)
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))
    # http.client returns a short body silently when the connection drops
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"connection closed after {size} of {total} bytes")


# --------------------------------------------------------------------------- extraction


def _open_zip(dataset: str, archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)  # reads the central directory: catches truncation and garbage
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptArchiveError(f"{dataset}: {archive} is not a readable zip archive ({exc}); "
                                  f"expected the benchmark .zip") from None


def _pick_folder(dataset: str, candidates: list[str], where: str) -> str:
    """The shallowest folder named like the dataset among those holding ``REQUIRED``."""
    named = sorted((c for c in candidates if posixpath.basename(c).lower() == dataset.lower()),
                   key=lambda c: (c.count("/"), c))
    if not named:
        raise DownloadError(f"{dataset}: {where} has no folder named {dataset} containing {' and '.join(REQUIRED)}; "
                            f"folders that contain them: {sorted(candidates) or 'none'}")
    return named[0]


def copy_from_zip(dataset: str, archive: Path, dest: Path) -> str:
    """Copy the dataset's files out of ``archive`` into ``dest``; return the folder they came from."""
    with _open_zip(dataset, archive) as zf:
        names = set(zf.namelist())
        candidates = [posixpath.dirname(n) for n in names if posixpath.basename(n) == REQUIRED[0]
                      and posixpath.join(posixpath.dirname(n), REQUIRED[1]) in names]
        folder = _pick_folder(dataset, candidates, f"archive {archive}")
        try:
            for name in REQUIRED + CLASS_LISTS:
                member = posixpath.join(folder, name)
                if member in names:
                    with zf.open(member) as src, open(dest / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise CorruptArchiveError(f"{dataset}: {archive} is corrupt, reading {member} failed ({exc})") from None
    return folder


def copy_from_folder(dataset: str, root: Path, dest: Path) -> str:
    """Copy the dataset's files out of an extracted tree; return the folder, relative to ``root``."""
    if not root.is_dir():
        raise DownloadError(f"{dataset}: folder {root} does not exist; expected an extracted tree holding "
                            f"{' and '.join(REQUIRED)} (download.sources.{dataset}.path)")
    if all((root / f).is_file() for f in REQUIRED):
        folder = root
    else:
        candidates = [p.parent.relative_to(root).as_posix() for p in root.rglob(REQUIRED[0])
                      if (p.parent / REQUIRED[1]).is_file()]
        folder = root / _pick_folder(dataset, candidates, f"folder {root}")
    for name in REQUIRED + CLASS_LISTS:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    return folder.relative_to(root).as_posix()
