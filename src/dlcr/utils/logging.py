"""One logger for the package; the CLI configures where its records go.

Every ``dlcr`` command calls :func:`setup_logging` once: records of the ``dlcr.*`` loggers reach the
terminal (stderr) through one handler that never tears a progress bar apart. In a terminal the
handler is rich's; written to a file or a pipe each record is one plain line (``warning: …`` for
warnings, the bare message for information), so logs stay greppable. ``--quiet`` keeps warnings and
errors only and hides progress bars; ``--verbose`` adds debug records with the logger's name.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("dlcr") else f"dlcr.{name}")


class _PlainHandler(logging.Handler):
    """One line per record on the *current* ``sys.stderr`` (a test's capture, a redirected file)."""

    def __init__(self, with_names: bool) -> None:
        super().__init__()
        self.with_names = with_names

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        name = f"{record.name}: " if self.with_names else ""
        if record.levelno >= logging.ERROR:
            return f"error: {name}{msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {name}{msg}"
        if record.levelno < logging.INFO:
            return f"debug: {name}{msg}"
        return f"{name}{msg}"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            with tqdm.external_write_mode(file=sys.stderr):
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def _rich_handler(with_names: bool) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    class _Rich(RichHandler):
        def emit(self, record: logging.LogRecord) -> None:
            with tqdm.external_write_mode(file=sys.stderr):
                super().emit(record)

    h = _Rich(console=Console(stderr=True), show_time=with_names, show_path=False, markup=False,
              rich_tracebacks=False, log_time_format="%H:%M:%S")
    if with_names:
        h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return h


def setup_logging(level: str = "normal", *, rich: bool | None = None) -> None:
    """Send ``dlcr.*`` records at ``level`` (quiet | normal | verbose) to stderr; idempotent.

    ``rich`` defaults to whether stderr is a terminal. Progress bars follow: off when quiet.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    from dlcr.utils import progress

    root = logging.getLogger("dlcr")
    for h in list(root.handlers):
        if getattr(h, "_dlcr_terminal", False):
            root.removeHandler(h)
    use_rich = sys.stderr.isatty() if rich is None else rich
    verbose = level == "verbose"
    handler = _rich_handler(verbose) if use_rich else _PlainHandler(verbose)
    handler._dlcr_terminal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    progress.set_quiet(level == "quiet")
