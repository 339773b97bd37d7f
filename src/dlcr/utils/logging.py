"""One logger for the package; the CLI sets the level."""

from __future__ import annotations

import logging

_FMT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("dlcr") else f"dlcr.{name}")


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger("dlcr")
    if not root.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter(_FMT, datefmt="%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
