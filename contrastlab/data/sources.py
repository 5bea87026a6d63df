"""Where each dataset comes from: official URLs and checksums, search locations, errors.

Checksums are the md5s published for the official files (the same ones torchvision checks);
they are verified on download only. Files found on disk are trusted, because repackaged copies
(Debian re-compresses Fashion-MNIST's .gz files, for example) differ byte-wise but not in
content; the readers validate their structure instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contrastlab.data.download import cache_dir, download_file

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Remote:
    """One official file: its name on disk, its URL and its md5."""

    filename: str
    url: str
    md5: str


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"

REMOTES: dict[str, dict[str, tuple[Remote, ...]]] = {
    "fashion-mnist": {
        "train": (
            Remote(
                "train-images-idx3-ubyte.gz",
                _FASHION + "train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            Remote(
                "train-labels-idx1-ubyte.gz",
                _FASHION + "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
        ),
        "test": (
            Remote(
                "t10k-images-idx3-ubyte.gz",
                _FASHION + "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            Remote(
                "t10k-labels-idx1-ubyte.gz",
                _FASHION + "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
    },
    "mnist": {
        "train": (
            Remote(
                "train-images-idx3-ubyte.gz",
                _MNIST + "train-images-idx3-ubyte.gz",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            Remote(
                "train-labels-idx1-ubyte.gz",
                _MNIST + "train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
        ),
        "test": (
            Remote(
                "t10k-images-idx3-ubyte.gz",
                _MNIST + "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
            ),
            Remote(
                "t10k-labels-idx1-ubyte.gz",
                _MNIST + "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
    },
    "cifar10": {
        "all": (
            Remote(
                "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
    },
    "cifar100": {
        "all": (
            Remote(
                "cifar-100-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
    },
    "stl10": {
        "all": (
            Remote(
                "stl10_binary.tar.gz",
                "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
                "91f7769df0f17e558f3565bffb0c7dfb",
            ),
        ),
    },
    "svhn": {
        "train": (
            Remote(
                "train_32x32.mat", _SVHN + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"
            ),
        ),
        "test": (
            Remote("test_32x32.mat", _SVHN + "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ),
        "extra": (
            Remote(
                "extra_32x32.mat", _SVHN + "extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"
            ),
        ),
    },
}


def remotes_for(name: str, split: str) -> tuple[Remote, ...]:
    """The official files holding ``split`` of ``name`` (archives hold every split)."""
    table = REMOTES[name]
    return table.get(split, table.get("all", ()))


# Where torchvision keeps the IDX files under its ``root``.
_TORCHVISION_RAW = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


def search_roots(name: str, root: str | Path | None) -> list[Path]:
    """Folders to look in, in order: ``root``, ``root/name`` and, for MNIST and Fashion-MNIST,
    torchvision's ``root/MNIST/raw`` / ``root/FashionMNIST/raw`` if ``root`` is given; else the
    cache (``cache_dir()/name``) and, for Fashion-MNIST, the Debian package's folder."""
    if root is not None:
        base = Path(root).expanduser()
        extra = [base / _TORCHVISION_RAW[name]] if name in _TORCHVISION_RAW else []
        return [base, base / name, *extra]
    roots = [cache_dir() / name]
    if name == "fashion-mnist":
        roots.append(DEBIAN_FASHION_MNIST)
    return roots


def download_target(name: str, root: str | Path | None) -> Path:
    """The folder downloads go to: ``root`` if given, else ``cache_dir()/name``."""
    return Path(root).expanduser() if root is not None else cache_dir() / name


def fetch(name: str, split: str, root: str | Path | None, *, quiet: bool = False) -> Path:
    """Download the official files of ``split`` of ``name``; return the folder holding them."""
    target = download_target(name, root)
    for remote in remotes_for(name, split):
        download_file(remote.url, target / remote.filename, md5=remote.md5, quiet=quiet)
    return target


def not_found(name: str, split: str, searched: list[Path], expected: str) -> FileNotFoundError:
    """A FileNotFoundError saying where the files were looked for and how to provide them."""
    files = ", ".join(r.filename for r in remotes_for(name, split)) or expected
    where = "\n  ".join(str(p) for p in searched)
    hint = ""
    if name == "fashion-mnist":
        hint = (
            "\nOn Debian/Ubuntu, `apt-get install dataset-fashion-mnist` provides the files "
            f"in {DEBIAN_FASHION_MNIST}."
        )
    return FileNotFoundError(
        f"{name} ({split}) not found; looked for {expected} in:\n  {where}\n"
        f"Put the official files ({files}) in one of these folders, pass root= the folder "
        f"holding them, or use download=True (mirror: $CONTRASTLAB_MIRROR).{hint}"
    )
