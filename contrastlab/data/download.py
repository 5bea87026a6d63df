"""Checksum-verified, atomic downloads (urllib only) and safe archive extraction.

A download streams into a temporary file next to its destination, is verified against its
md5 or sha256, and only then renamed into place, so an interrupted or corrupt transfer never
leaves a file in the cache. Transient failures are retried a bounded number of times.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import ssl
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 16
MIRROR_ENV = "CONTRASTLAB_MIRROR"
DATA_ENV = "CONTRASTLAB_DATA"


class DownloadError(OSError):
    """A file could not be downloaded (network unreachable, server error, dropped transfer)."""


class ChecksumError(ValueError):
    """A downloaded file does not match its published checksum."""


def cache_dir() -> Path:
    """The dataset cache: ``$CONTRASTLAB_DATA`` if set, else ``~/.cache/contrastlab``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "contrastlab"


def resolve_url(url: str, base_url: str | None = None) -> str:
    """Replace the host and path of ``url`` by a mirror, keeping the file name.

    ``base_url`` wins over ``$CONTRASTLAB_MIRROR``; with neither, ``url`` is returned unchanged.
    """
    base = base_url if base_url is not None else os.environ.get(MIRROR_ENV)
    if not base:
        return url
    return base.rstrip("/") + "/" + url.rsplit("/", 1)[-1]


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is "md5" or "sha256")."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, timeout: float, quiet: bool) -> None:
    """Stream ``url`` into the already-open path ``target``; raise on a short transfer."""
    request = urllib.request.Request(url, headers={"User-Agent": "contrastlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header is not None else None
        show = not quiet and sys.stderr.isatty()
        received = 0
        with tqdm(
            total=expected,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=not show,
        ) as bar:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if expected is not None and received != expected:
            raise DownloadError(f"{url}: the transfer stopped after {received} of {expected} bytes")


def umask_mode(path: Path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the mode an ordinary ``open`` would:
    0666 less the process's umask, so a shared cache stays readable by its other users."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (threads may be making
    files meanwhile); elsewhere set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Network failures worth another attempt. Other OSErrors (a full disk, no permission to write
# the cache) are local and are raised at once.
_TRANSIENT = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
    DownloadError,
)


def download_file(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    base_url: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    quiet: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its checksum.

    Args:
        url: the official URL; only its file name is kept when a mirror is given.
        dest: final path. Its folder is created. An existing file is left untouched.
        md5, sha256: expected hex digest (at least one should be given).
        base_url: mirror base URL (overrides ``$CONTRASTLAB_MIRROR``), e.g. a local server.
        retries: attempts for transient failures (connection errors, dropped transfers); errors
            of the local file system are not retried.
        timeout: socket timeout in seconds, per attempt.
        backoff: seconds to wait before the second attempt, doubled after each failure.
        quiet: no progress bar (it is also hidden when stderr is not a terminal).

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the file arrived but its digest differs (nothing is cached).
        DownloadError: every attempt failed; the message says where to put the file by hand.
        OSError: writing the file failed locally (no space, no permission); not retried.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    source = resolve_url(url, base_url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                _fetch(source, tmp, timeout, quiet)
            except urllib.error.HTTPError as err:
                last_error = err
                if 400 <= err.code < 500:
                    break
                continue
            except _TRANSIENT as err:
                last_error = err
                continue
            for algorithm, expected in (("md5", md5), ("sha256", sha256)):
                if expected is not None and file_digest(tmp, algorithm) != expected.lower():
                    raise ChecksumError(
                        f"{source}: {algorithm} checksum mismatch (expected {expected}); "
                        f"the download was discarded and nothing was written to {dest}"
                    )
            umask_mode(tmp)
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(
        f"could not download {source} ({last_error}). If this machine is offline, copy the "
        f"official file {dest.name} (from {url}) to {dest.parent}/"
    ) from last_error


def extract_tar(archive: Path, dest_dir: Path, member_root: str) -> Path:
    """Extract ``archive`` (a .tar/.tar.gz) whose top-level folder is ``member_root``.

    The archive is unpacked into a temporary folder inside ``dest_dir`` and ``member_root`` is
    renamed into place afterwards, so an interrupted extraction leaves nothing half-written; if
    another process put the folder in place first, its folder is used. Members with absolute
    paths, ``..`` or links outside the archive are refused (on Pythons without
    ``tarfile.data_filter``, every link and special file is). The whole compressed stream is
    read, so a damaged archive fails its gzip/bz2/xz check instead of extracting wrong bytes.

    Returns:
        ``dest_dir / member_root``.

    Raises:
        ValueError: naming the archive, if it is corrupt or lacks ``member_root``.
    """
    final = dest_dir / member_root
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python < 3.10.12 / 3.11.4
                    tar.extractall(tmp, members=_plain_members(tar, archive))
                # tarfile stops at the end-of-archive blocks, before the stream's checksum.
                while tar.fileobj is not None and tar.fileobj.read(1 << 20):
                    pass
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise ValueError(f"{archive}: corrupt or truncated archive ({err})") from err
        if not (tmp / member_root).is_dir():
            raise ValueError(f"{archive}: archive has no top-level folder {member_root}/")
        try:
            os.replace(tmp / member_root, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plain_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    """The archive's files and folders, refusing absolute paths, ``..`` and anything else."""
    for member in tar:
        parts = Path(member.name).parts
        if Path(member.name).is_absolute() or ".." in parts:
            raise tarfile.TarError(f"member {member.name!r} points outside the archive")
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"member {member.name!r} is a link or special file")
        yield member
