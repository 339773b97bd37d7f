"""Entry point of the `dlcr` command.

Sub-commands live in one module each (``dlcr.cli.<name>``) and import heavy libraries (torch,
diffusers) inside the command bodies, so ``dlcr --help`` stays fast. Every user-caused error is a
:class:`dlcr.errors.DlcrError`; :func:`main` prints it as one line on stderr and exits non-zero.
"""

from __future__ import annotations

import contextlib
import sys

import click
import typer

from dlcr.errors import DlcrError, first_line

# Recent typer releases ship their own copy of click and raise that copy's exceptions; catch both.
_Exit: tuple[type[BaseException], ...] = (click.exceptions.Exit,)
_ClickError: tuple[type[BaseException], ...] = (click.ClickException,)
_Abort: tuple[type[BaseException], ...] = (click.exceptions.Abort, KeyboardInterrupt)
try:
    from typer import exceptions as _texc
    from typer._click import exceptions as _tclick

    _Exit += (_texc.Exit,)
    _ClickError += (_tclick.ClickException,)
    _Abort += (_texc.Abort,)
except (ImportError, AttributeError):  # pragma: no cover - older typer uses click itself
    pass


app = typer.Typer(
    name="dlcr",
    help="DLCR: clothes-changing person re-identification with diffusion-generated clothes variants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="",
                               help="only warnings and errors; no progress bars"),
    verbose: bool = typer.Option(False, "--verbose", "-v", metavar="",
                                 help="also debug messages, with the logger's name and time"),
) -> None:
    """DLCR: clothes-changing person re-identification with diffusion-generated clothes variants.

    Put -q / -v before the command: `dlcr -q train -c prcc`.
    """
    from dlcr.errors import ConfigError
    from dlcr.utils.logging import setup_logging

    if quiet and verbose:
        raise ConfigError("--quiet and --verbose exclude each other; give one")
    setup_logging("quiet" if quiet else "verbose" if verbose else "normal")


def _register() -> None:
    from dlcr.cli import ablate, config, data, demo, evaluate, generate, released, report, run_jobs, train

    app.add_typer(config.app, name="config")
    app.add_typer(data.app, name="data")
    app.add_typer(generate.app, name="generate")
    generate.app.command("import-released")(released.import_released_cmd)
    generate.app.command("run-jobs")(run_jobs.run_jobs_cmd)
    app.command("train")(train.train_cmd)
    app.command("evaluate")(evaluate.evaluate_cmd)
    app.command("ablate")(ablate.ablate_cmd)
    app.command("demo")(demo.demo_cmd)
    app.command("report")(report.report_cmd)


_register()


_INTERRUPTED = "error: interrupted{by}; what was committed is kept: run the same command again to resume"
_received: list[int] = []  # the signal that interrupted the run (SIGTERM), if any


def _on_sigterm(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _interrupted() -> None:
    """Ctrl-C (exit 130) or SIGTERM (exit 143): one line, never exit 0, so `dlcr a && dlcr b` stops."""
    by = " by SIGTERM" if _received else ""
    print(_INTERRUPTED.format(by=by), file=sys.stderr)
    sys.exit(143 if _received else 130)


_PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs", "devpts",
              "pstore", "bpf", "efivarfs", "fusectl", "binfmt_misc"}


def _pseudo_fs(path: object) -> str | None:
    """The type of the kernel pseudo file system (``proc``, ``sysfs`` ...) holding ``path``, else None."""
    import os
    from pathlib import Path

    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace").splitlines()
        p = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return None
    best, fstype = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, parts[2]
    return fstype if fstype in _PSEUDO_FS else None


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become ``error: <one line>`` and exit status 2."""
    import signal

    with contextlib.suppress(ValueError):  # not in the main thread (e.g. a test runner's worker)
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # with standalone_mode=False typer turns Ctrl-C into a *returned* 130 instead of raising
        if app(args=argv, standalone_mode=False) == 130:
            _interrupted()
    except DlcrError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except _Exit as e:
        sys.exit(e.exit_code)
    except _ClickError as e:
        e.show()
        sys.exit(e.exit_code)
    except _Abort:
        _interrupted()
    except PermissionError as e:
        print(f"error: permission denied: {e.filename or e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        # The environment refused a file operation (a file where a folder must be, disk full, read-only
        # file system ...): the user can fix it, so one line, not a traceback.
        fs = _pseudo_fs(e.filename) if e.filename else None
        if fs is not None:  # /proc says "No such file or directory" to a file it cannot hold
            print(f"error: {e.filename} cannot be written: it is on the {fs} pseudo file system "
                  "(choose an output folder on a disk)", file=sys.stderr)
            sys.exit(2)
        what = e.strerror or first_line(e)
        print(f"error: {what}: {e.filename}" if e.filename else f"error: {what}", file=sys.stderr)
        sys.exit(2)
