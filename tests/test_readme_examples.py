"""The README's Python examples run as printed.

Each ```python block of README.md is executed in a fresh namespace, against a small
Fashion-MNIST written in the official IDX format into ``$CONTRASTLAB_DATA`` (where
``load_dataset`` looks first), so that they run in seconds and without the Debian package. The
losses and data examples run unchanged; the training example (five minutes as printed) runs
with the tiny settings of ``tests/engine/test_engine_custom_backbone.py`` in place of its time
budget and its run directory under ``tmp_path``. A renamed function, argument or config key
that the README still names fails here.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

TINY = (
    '"data.train_subset=512", "data.batch_size=128", "train.epochs=1", '
    '"model.proj_hidden_dim=32", "model.proj_dim=16", "train.quiet=true", '
    '"train.diagnostics_samples=256", "train.threads=1", "eval.linear_epochs=2", '
    '"eval.knn_k=20"'
)


@pytest.fixture
def small_fashion_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """600 training and 200 test images of noise (random labels) in the four official files."""
    folder = tmp_path / "cache" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes())
            )
    monkeypatch.setenv("CONTRASTLAB_DATA", str(tmp_path / "cache"))


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _block(marker: str) -> str:
    found = [b for b in _python_blocks() if marker in b]
    assert len(found) == 1, f"expected one README python block containing {marker!r}"
    return found[0]


def test_readme_has_the_examples_this_file_runs() -> None:
    blocks = _python_blocks()
    assert len(blocks) == 3, "a README python block was added or removed: run it here too"


def test_losses_example() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block("nt_xent(z1, z2, 0.5)"), "README.md:losses", "exec"), namespace)
    assert "tau" in namespace


@pytest.mark.usefixtures("small_fashion_mnist")
def test_data_example() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block("load_dataset("), "README.md:data", "exec"), namespace)
    v1, v2 = namespace["v1"], namespace["v2"]  # the last batch's views
    assert v1.shape[1:] == (1, 20, 20) and v2.shape == v1.shape  # type: ignore[attr-defined]
    assert len(namespace["ds"]) == 600  # type: ignore[arg-type]  # the small copy was read


@pytest.mark.usefixtures("small_fashion_mnist")
@pytest.mark.filterwarnings("ignore:embeddings are collapsing")
def test_training_example_with_tiny_settings(tmp_path: Path) -> None:
    code = _block("def my_encoder()")
    out = (tmp_path / "mine").as_posix()
    for old, new in (('"train.max_time=5"', TINY), ("runs/mine", out)):
        assert old in code, f"the README's training example no longer contains {old}"
        code = code.replace(old, new)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md:training", "exec"), namespace)
    summary = namespace["summary"]
    for key in ("linear_top1", "knn_top1", "untrained_linear_top1", "untrained_knn_top1"):
        assert 0.0 <= summary[key] <= 100.0, key  # type: ignore[index]
    assert (tmp_path / "mine" / "summary.json").is_file()
