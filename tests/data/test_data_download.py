"""Downloads against a local HTTP server on 127.0.0.1: success, bad checksum, dropped link."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from contrastlab.data import ChecksumError, DownloadError, download_file, load_dataset, sources
from contrastlab.data.download import extract_tar

PAYLOAD = bytes(range(256)) * 400  # 100 kB


class _Server:
    """Serves ``files`` (name -> bytes); in ``drop`` mode announces the full length, sends
    half and closes the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop = False
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = owner.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.drop:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_success_writes_verified_file(server: _Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = tmp_path / "cache" / "data.bin"
    out = download_file("https://example.org/x/data.bin", dest, md5=_md5(PAYLOAD),
                        sha256=hashlib.sha256(PAYLOAD).hexdigest(), base_url=server.url,
                        quiet=True)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["data.bin"]  # no temporary left
    download_file("https://example.org/x/data.bin", dest, md5=_md5(PAYLOAD), base_url=server.url)
    assert server.requests == 1  # cached file reused


def test_checksum_mismatch_caches_nothing(server: _Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    with pytest.raises(ChecksumError, match="md5 checksum mismatch"):
        download_file("https://example.org/data.bin", dest, md5="0" * 32, base_url=server.url,
                      quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_no_corrupt_cache_and_retry_works(
    server: _Server, tmp_path: Path
) -> None:
    server.files["data.bin"] = PAYLOAD
    server.drop = True
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=str(tmp_path)):
        download_file("https://example.org/data.bin", dest, md5=_md5(PAYLOAD),
                      base_url=server.url, retries=2, backoff=0.0, timeout=5, quiet=True)
    assert server.requests == 2  # bounded retries
    assert list(tmp_path.iterdir()) == []
    server.drop = False
    download_file("https://example.org/data.bin", dest, md5=_md5(PAYLOAD), base_url=server.url,
                  quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_offline_error_says_where_to_put_the_file(tmp_path: Path) -> None:
    srv = _Server()
    dead = srv.url
    srv.close()  # nothing listens there any more
    with pytest.raises(DownloadError, match=r"copy the official file data\.bin"):
        download_file("https://example.org/data.bin", tmp_path / "data.bin", md5="0" * 32,
                      base_url=dead, retries=1, timeout=2, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_not_retried(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        download_file("https://example.org/missing.bin", tmp_path / "m.bin", md5="0" * 32,
                      base_url=server.url, retries=3, backoff=0.0, quiet=True)
    assert server.requests == 1


def test_load_dataset_downloads_through_the_mirror(
    server: _Server, tmp_path: Path, fmt, monkeypatch: pytest.MonkeyPatch,
    _isolated_cache: Path,
) -> None:
    truth = fmt.write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = fmt.make_tar(tmp_path / "cifar-10-python.tar.gz",
                           tmp_path / "src" / "cifar-10-batches-py")
    data = archive.read_bytes()
    server.files["cifar-10-python.tar.gz"] = data
    official = sources.REMOTES["cifar10"]["all"][0]
    monkeypatch.setitem(sources.REMOTES, "cifar10",
                        {"all": (sources.Remote(official.filename, official.url, _md5(data)),)})
    monkeypatch.setenv("CONTRASTLAB_MIRROR", server.url)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10")
    ds = load_dataset("cifar10", "test", download=True)
    assert torch.equal(ds.labels, torch.from_numpy(truth["test"][1]))
    assert (_isolated_cache / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    server.files.clear()  # second load is offline, from the cache
    assert len(load_dataset("cifar10", "train")) == len(truth["train"][1])


def test_fashion_mnist_download_into_cache(
    server: _Server, tmp_path: Path, fmt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    arrays = fmt.write_idx_dataset(tmp_path / "src")
    table = {}
    for split, remotes in sources.REMOTES["fashion-mnist"].items():
        new = []
        for remote in remotes:
            body = (tmp_path / "src" / remote.filename).read_bytes()
            server.files[remote.filename] = body
            new.append(sources.Remote(remote.filename, remote.url, _md5(body)))
        table[split] = tuple(new)
    monkeypatch.setitem(sources.REMOTES, "fashion-mnist", table)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setenv("CONTRASTLAB_MIRROR", server.url)
    ds = load_dataset("fashion-mnist", "train", download=True)
    assert torch.equal(ds.labels, torch.from_numpy(arrays["train"][1]).long())


def test_downloaded_file_follows_the_umask(server: _Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    old = os.umask(0o022)
    try:
        dest = download_file("https://example.org/data.bin", tmp_path / "data.bin",
                             md5=_md5(PAYLOAD), base_url=server.url, quiet=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_local_file_errors_are_raised_at_once_not_retried(server: _Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    dest.mkdir()  # something that is not a file sits where the download must go
    with pytest.raises(IsADirectoryError):
        download_file("https://example.org/data.bin", dest, md5=_md5(PAYLOAD),
                      base_url=server.url, retries=3, backoff=0.0, quiet=True)
    assert server.requests == 1
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temporary left


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


_MEMBERS = {"root/a.bin": os.urandom(3000), "root/sub/b.bin": os.urandom(2000)}


def test_extract_tar_unpacks_and_refuses_damaged_archives(tmp_path: Path) -> None:
    good = _tar_gz(tmp_path / "good.tar.gz", _MEMBERS)
    (tmp_path / "x").mkdir()
    out = extract_tar(good, tmp_path / "x", "root")
    assert (out / "sub" / "b.bin").read_bytes() == _MEMBERS["root/sub/b.bin"]
    raw = good.read_bytes()
    for name, data in (
        ("flipped.tar.gz", raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0x10])
         + raw[len(raw) // 2 + 1 :]),
        ("cut.tar.gz", raw[:-4]),  # without the gzip trailer's length field
    ):
        (tmp_path / name).write_bytes(data)
        dest = tmp_path / name.split(".")[0]
        dest.mkdir()
        with pytest.raises(ValueError, match=f"{name}: corrupt or truncated"):
            extract_tar(tmp_path / name, dest, "root")
        assert list(dest.iterdir()) == []  # nothing half-written


def test_extract_tar_without_data_filter_refuses_escapes_and_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # as on Python 3.11.2
    good = _tar_gz(tmp_path / "good.tar.gz", _MEMBERS)
    (tmp_path / "ok").mkdir()
    assert (extract_tar(good, tmp_path / "ok", "root") / "a.bin").read_bytes() == _MEMBERS[
        "root/a.bin"
    ]
    evil = _tar_gz(tmp_path / "evil.tar.gz", {"root/a.bin": b"x", "root/../../evil": b"y"})
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="points outside the archive"):
        extract_tar(evil, tmp_path / "e", "root")
    with tarfile.open(tmp_path / "link.tar.gz", "w:gz") as tar:
        link = tarfile.TarInfo("root/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "l").mkdir()
    with pytest.raises(ValueError, match="link or special file"):
        extract_tar(tmp_path / "link.tar.gz", tmp_path / "l", "root")
    assert not (tmp_path / "evil").exists()


def test_extract_tar_uses_the_folder_another_process_put_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _tar_gz(tmp_path / "good.tar.gz", _MEMBERS)
    dest = tmp_path / "d"
    dest.mkdir()
    real = tarfile.TarFile.extractall

    def racing(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        (dest / "root").mkdir()  # the other process renames its copy in first
        (dest / "root" / "a.bin").write_bytes(_MEMBERS["root/a.bin"])

    monkeypatch.setattr(tarfile.TarFile, "extractall", racing)
    out = extract_tar(good, dest, "root")
    assert out == dest / "root" and (out / "a.bin").read_bytes() == _MEMBERS["root/a.bin"]
    assert [p.name for p in dest.iterdir()] == ["root"]  # our temporary copy is gone
