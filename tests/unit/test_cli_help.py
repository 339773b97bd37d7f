"""`--help` of every command shows each option's default and flags as flags; numeric options refuse 0."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dlcr.cli.main import app, main

ROW = re.compile(r"^│\s*\*?\s*(--[\w-]+)")


def _commands() -> list[tuple[list[str], Any]]:
    """Every command and sub-command of the real app, as (argv path, click command)."""
    out: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _commands()


def _rows(text: str) -> dict[str, str]:
    """Option rows of rich help output: {--long-name: the row's text, continuation lines joined}."""
    rows: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("│"):
            current = None
            continue
        m = ROW.match(line)
        if m:
            current = m.group(1)
            rows[current] = line
        elif current is not None:
            rows[current] += " " + line.strip("│ ")
    return rows


def test_the_walk_reaches_every_command():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"train", "evaluate", "demo", "report", "data inspect", "data synth", "generate masks",
            "generate all", "generate guidance-train"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "dlcr" for p, _ in COMMANDS])
def test_help_shows_every_default_and_flags_as_flags(path, cmd):
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rows = _rows(res.output)
    options = [p for p in cmd.params if p.param_type_name == "option"]  # typer ships its own click copy
    if not hasattr(cmd, "commands") and path not in (["report"], ["config", "list"]):  # nor do groups
        assert options, f"{' '.join(path)}: no options found"
    for p in options:
        long = next(o for o in p.opts if o.startswith("--"))
        row = rows.get(long)
        assert row is not None, f"{' '.join(path)}: {long} missing from --help:\n{res.output}"
        if p.is_flag:
            # a flag takes no value: no <bool> type next to it (`--resume true` is an error)
            assert "<bool>" not in row, f"{' '.join(path)} {long} reads as taking a value: {row}"
            for neg in p.secondary_opts:
                assert neg in row and "[default: " in row, row
            continue
        if p.required or p.multiple:
            continue
        assert "[default: " in row, f"{' '.join(path)} {long} shows no default: {row}"
        shown = p.show_default if isinstance(p.show_default, str) else str(p.default)
        assert shown in row, (long, shown, row)


def test_no_default_hidden_in_help_text():
    # `[default: ...]` written into a help string is eaten by rich markup: show_default carries it
    for path, cmd in COMMANDS:
        for p in cmd.params:
            assert "[default" not in (getattr(p, "help", None) or ""), (path, p.name)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,option", [
    (["evaluate", "--checkpoint", "missing.json", "--l", "0"], "--l"),
    (["evaluate", "--checkpoint", "missing.json", "--m", "0"], "--m"),
    (["evaluate", "--checkpoint", "missing.json", "--m", "-2"], "--m"),
    (["demo", "--seeds", "not-a-seed", "--epochs", "0"], "--epochs"),
    (["demo", "--seeds", "not-a-seed", "--l", "0"], "--l"),
    (["demo", "--seeds", "not-a-seed", "--threads", "0"], "--threads"),
    (["generate", "guidance-train", "--set", "generate.backend=nope", "--steps", "0"], "--steps"),
])
def test_zero_is_refused_in_one_line_not_taken_for_the_default(argv, option, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    assert code == 2, err
    assert err.splitlines() == [f"error: {option} must be a positive integer, got {argv[-1]}"]
    assert list(tmp_path.iterdir()) == []
