"""User-facing errors.

Every error a user can cause (bad path, bad config, bad file) is raised as a :class:`DlcrError`
subclass with a one-line message. The CLI prints ``error: <message>`` on stderr and exits with
status 2; library users catch the exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class DlcrError(Exception):
    """Base class of every error caused by user input; its message is one line."""

    exit_code = 2

    def __init__(self, message: str):
        text = str(message)
        if text.startswith("Caught ") and "\nOriginal Traceback" in text:
            # Re-raised by torch from a DataLoader worker with the worker's whole traceback as the
            # message; its last line holds the original one-line message after "<class>: ".
            last = text.rstrip().splitlines()[-1]
            text = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(" ".join(text.split()))


class ConfigError(DlcrError):
    """Unknown key, wrong type or malformed YAML in a configuration."""


class DatasetError(DlcrError):
    """Missing dataset root, wrong layout, or a file that breaks the naming pattern."""


class ImageError(DlcrError):
    """An image that cannot be read or decoded."""


class InputError(DlcrError):
    """Invalid numeric input (NaN features, mismatched lengths, empty sets)."""


class CheckpointError(DlcrError):
    """A checkpoint that does not fit the model or cannot be loaded safely."""


class UnsafePathError(DlcrError):
    """A path that would leave the root folder it must stay in."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): third-party
    errors often carry tracebacks or long hints that would break the one-line rule."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def examples_note(items: list[str] | tuple[str, ...], examples: int = 3) -> str:
    """``" (e.g. a, b, c, and 4 more)"`` for the first ``examples`` of ``items``; ``""`` when there is none."""
    if not items or examples <= 0:
        return ""
    more = len(items) - examples
    return " (e.g. " + ", ".join(items[:examples]) + (f", and {more} more" if more > 0 else "") + ")"


def did_you_mean(name: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``options`` to a mistyped ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def weights_only_error(e: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file.

    torch's message is several paragraphs (with terminal escape codes) whose first line explains how
    to bypass the check; the informative part is the refused global or opcode further down.
    """
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            detail = ln.split("WeightsUnpickler error:", 1)[1].strip()
            if not detail and i + 1 < len(lines):
                detail = lines[i + 1]
            detail = detail.split(". Please use")[0]
            if "GLOBAL" in detail:
                return f"it holds more than plain tensors ({detail})"
            return f"not a torch tensor file ({detail})"
        if "unsupported GLOBAL" in ln:
            return f"it holds more than plain tensors ({ln})"
    return lines[0] if lines else type(e).__name__
