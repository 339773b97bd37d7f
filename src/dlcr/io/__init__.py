"""Atomic file writes, image codecs and Parquet tables."""

from dlcr.io.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from dlcr.io.paths import safe_join

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "safe_join"]
