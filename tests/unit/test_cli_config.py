"""``dlcr config show`` / ``list``: the resolved configuration, as every run records it."""

from __future__ import annotations

import json

import pytest
import yaml

from cli_run import run_cli as run
from dlcr.config import list_packaged_configs, load_config, to_dict


@pytest.mark.parametrize("name", list_packaged_configs())
def test_show_prints_every_packaged_config_resolved(name, capsys):
    code, out, _ = run(["config", "show", "-c", name], capsys)
    assert code == 0
    assert yaml.safe_load(out) == to_dict(load_config(name))  # defaults and the _base_ chain applied


def test_show_applies_overrides_and_prints_json(capsys):
    code, out, _ = run(["config", "show", "-c", "prcc", "--set", "train.epochs=7", "--set", "optim.lr=1e-3",
                        "--json"], capsys)
    assert code == 0
    got = json.loads(out)
    assert got["train"]["epochs"] == 7 and got["optim"]["lr"] == 1e-3
    assert got == to_dict(load_config("prcc", ["train.epochs=7", "optim.lr=1e-3"]))
    # a file written by show reads back as the same configuration (a run's config.yaml is a valid -c)
    code, text, _ = run(["config", "show", "-c", "prcc", "--set", "train.epochs=7", "--set", "optim.lr=1e-3"], capsys)
    assert yaml.safe_load(text) == got


def test_show_of_a_run_config_file_round_trips(tmp_path, capsys):
    code, text, _ = run(["config", "show", "-c", "ltcc", "--set", "sampler.num_instances=4"], capsys)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code, again, _ = run(["config", "show", "-c", str(path)], capsys)
    assert code == 0 and again == text


@pytest.mark.parametrize("argv, needle", [
    (["config", "show", "-c", "prcx"], "config 'prcx' not found"),
    (["config", "show", "-c", "prcc", "--set", "train.epoch=3"], "did you mean 'train.epochs'"),
    (["config", "show", "-c", "prcc", "--set", "optim.lr=nan"], "optim.lr"),
])
def test_show_refuses_bad_input_with_one_line(argv, needle, capsys):
    code, out, err = run(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_list_names_every_packaged_config_with_its_description(capsys):
    code, out, _ = run(["config", "list"], capsys)
    rows = [ln.split(None, 1) for ln in out.splitlines()]
    assert code == 0 and [r[0] for r in rows] == list_packaged_configs()
    assert all(len(r) == 2 and r[1].strip() for r in rows)  # each has a description
    assert dict(rows)["synthcc"] == "The embedded synthetic world, sized for 2 CPU cores"
