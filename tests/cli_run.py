"""``run_cli``: the ``dlcr`` command in-process, as the CLI tests call it (importable: pytest's
``pythonpath`` holds ``tests/``)."""

from __future__ import annotations

from dlcr.cli.main import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``dlcr ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def cli_status(argv: list[str]) -> int:
    """``dlcr ARGV`` in this process: its exit status only (the output stays for capsys to read)."""
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
