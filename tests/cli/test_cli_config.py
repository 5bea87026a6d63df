"""The config and the CLI reject what they cannot honour, naming the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contrastlab.cli import main
from contrastlab.config import Config, ConfigError, apply_overrides, config_from_dict, load_config


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="loss.temprature"):
        config_from_dict({"loss": {"temprature": 0.2}})
    with pytest.raises(ConfigError, match="'optimiser'"):
        config_from_dict({"optimiser": {}})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match="train.epochs"):
        config_from_dict({"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="loss.temperature"):
        apply_overrides(Config(), ["loss.temperature=[1, 2]"])
    with pytest.raises(ConfigError, match="train.amp"):
        config_from_dict({"train": {"amp": 3}})


def test_overrides_and_yaml(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("method:\n  name: supcon\nloss:\n  temperature: 0.07\n")
    cfg = apply_overrides(
        load_config(f), ["optim.lr=0.1", "train.max_time=2.5", "data.data_dir=null"]
    )
    assert cfg.method.name == "supcon" and cfg.loss.temperature == 0.07
    assert cfg.optim.lr == 0.1 and cfg.train.max_time == 2.5 and cfg.data.data_dir is None
    with pytest.raises(ConfigError, match="section.key"):
        apply_overrides(cfg, ["lr=0.1"])


def test_cli_rejects_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_cli_rejects_method_loss_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--method",
            "supcon",
            "--loss",
            "nt_xent",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "does not fit" in capsys.readouterr().err


def test_cli_rejects_supcon_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    pytest.importorskip("PIL")
    from PIL import Image

    for i in range(8):
        Image.new("L", (28, 28), color=i * 20).save(folder / f"{i}.png")
    code = main(
        [
            "train",
            "--method",
            "supcon",
            "--dataset",
            "folder",
            "--data-dir",
            str(folder),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--quiet",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "labels" in capsys.readouterr().err


def test_config_command_prints_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--method", "moco", "--temperature", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "name: moco" in text and "temperature: 0.3" in text
    # the views a run would train with, resolved without loading the data
    assert "augment: grayscale-asym\n" in text and "view_size: 20\n" in text
    assert "symmetric: false\n" in text


def test_config_json_round_trip(tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["loss.policy=dystress", "loss.shift=0.2"])
    from contrastlab.config import config_to_dict

    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg


def test_openmp_wait_defaults_respect_the_user() -> None:
    """The CLI bounds OpenMP's spin-waiting unless the environment already chose a policy."""
    import subprocess
    import sys

    from contrastlab.cli import openmp_wait_env

    assert openmp_wait_env({}) == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "2000"}
    assert openmp_wait_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert openmp_wait_env({"GOMP_SPINCOUNT": "0"}) == {}
    # applied when the module loads, i.e. before anything imports torch
    probe = (
        "import os, sys, contrastlab.cli; "
        "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["2000", "False"], out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["None", "False"], out.stderr


def test_every_config_key_is_described_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """Each key is named in its section's docstring, which ``contrastlab config --keys`` prints
    above the section's keys with their types and defaults."""
    import dataclasses
    import inspect

    assert main(["config", "--keys"]) == 0
    out = capsys.readouterr().out
    for section in dataclasses.fields(Config):
        obj = getattr(Config(), section.name)
        doc = inspect.getdoc(type(obj)) or ""
        undocumented = [f.name for f in dataclasses.fields(obj) if f"``{f.name}``" not in doc]
        assert not undocumented, f"[{section.name}] docstring does not describe {undocumented}"
        assert f"[{section.name}]" in out
        for f in dataclasses.fields(obj):
            line = next(
                x for x in out.splitlines() if x.split()[:1] == [f"{section.name}.{f.name}"]
            )
            assert line.endswith(f"default {getattr(obj, f.name)!r}"), line
    assert "data.rotate" in out and "float | None" in out


def test_text_values_are_taken_as_written_and_yaml_errors_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = apply_overrides(Config(), ["train.out=0755", "data.data_dir=data #2", "data.download=1"])
    assert (cfg.train.out, cfg.data.data_dir) == ("0755", "data #2")  # not octal 493, not "data"
    assert cfg.data.download is True  # YAML's 1
    assert apply_overrides(cfg, ["train.out=~", "data.data_dir=null"]).train.out is None
    assert apply_overrides(Config(), ["train.out='x y'"]).train.out == "x y"  # quotes unwrap
    with pytest.raises(ConfigError, match="override loss.temperature="):
        apply_overrides(Config(), ["loss.temperature=[0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  temperature: [0.1\n")
    assert main(["config", "--config", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)
    assert main(["config", "--out", "0755", "--data-dir", "data #2"]) == 0
    shown = capsys.readouterr().out
    assert "out: '0755'" in shown and "data_dir: 'data #2'" in shown


def test_demo_takes_the_users_method_and_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contrastlab.engine.run as engine_run

    seen: list[Config] = []
    monkeypatch.setattr(engine_run, "run", lambda cfg, resume=False: seen.append(cfg) or {})
    monkeypatch.setattr(engine_run, "format_report", lambda summary: "report")
    assert main(["demo"]) == 0
    assert (seen[-1].method.name, seen[-1].train.max_time) == ("simclr", 1.5)
    assert main(["demo", "--method", "byol", "--max-time", "5"]) == 0
    assert (seen[-1].method.name, seen[-1].train.max_time) == ("byol", 5.0)
    own = tmp_path / "own.yaml"
    own.write_text("method:\n  name: moco\ntrain:\n  epochs: 2\n")
    assert main(["demo", "--config", str(own)]) == 0  # the file is the whole intent
    assert (seen[-1].method.name, seen[-1].train.max_time, seen[-1].train.epochs) == ("moco", None, 2)


def test_bad_device_and_thread_count_are_config_errors() -> None:
    from contrastlab.engine.setup import prepare_run

    with pytest.raises(ConfigError, match="train.threads must be >= 1"):
        prepare_run(apply_overrides(Config(), ["train.threads=0"]))
    with pytest.raises(ConfigError, match="train.device"):
        prepare_run(apply_overrides(Config(), ["train.device=gpu"]))


def test_temperature_help_names_each_methods_default() -> None:
    # The help text is written out so that --help does not import torch; it must not drift
    # from the table the methods read (it did once, when MoCo's τ changed).
    import re

    from contrastlab.cli import build_parser
    from contrastlab.methods.registry import DEFAULT_TEMPERATURE

    sub = next(
        a for a in build_parser()._actions if a.dest == "command" and getattr(a, "choices", None)
    )
    for name in ("train", "demo"):
        action = next(a for a in sub.choices[name]._actions if a.dest == "temperature")
        named = dict(re.findall(r"(\w+) ([0-9.]+)", action.help.split("per method:")[1]))
        assert named, action.help
        for method, tau in named.items():
            assert float(tau) == DEFAULT_TEMPERATURE[method], (name, method, tau)
