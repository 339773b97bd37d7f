"""Tables grown in committed part files: the one way the long stages resume after a kill.

A stage that works through many items commits every finished batch as one *part*: a small Parquet
table written atomically (temp file, fsync, rename) into the table's parts folder under a name no
other writer uses, so any number of processes (torchrun ranks, Ray actors) may commit into the same
folder at once without coordination. The committed set is the main table plus the parts; a re-run
does ``planned - committed``. :meth:`PartsTable.consolidate` merges them into the main table under
an exclusive file lock, writes it atomically and only then deletes the parts it read: a kill at any
point loses nothing committed (parts merged twice give the same rows), and a part committed while
another process consolidates stays for the next consolidation. Readers hold the lock shared, so
they never miss rows moved from a part into the main table while they read. Rows are keyed by one
column the caller names.

Used by:

* the masks stage, :mod:`dlcr.generation.parsing`: ``masks.parquet``, parts in ``.masks.parts/``
  (the label maps on disk stay what proves an image parsed);
* descriptions, :mod:`dlcr.generation.describe` (tables named in
  :mod:`dlcr.generation.describe_tables`): ``captions.parquet`` and ``outfits.parquet``, parts in
  ``.captions.parts/`` and ``.outfits.parts/``;
* generation, :mod:`dlcr.generation.outputs`: ``manifest.parquet``, parts
  ``parts/<first job id>.parquet``, lock ``.manifest.lock``; its parts are written by the
  :mod:`~dlcr.generation.worker` of every driver (local, torchrun, :mod:`~dlcr.generation.ray_driver`),
  read and merged by :mod:`~dlcr.generation.runner_steps` / :mod:`~dlcr.generation.runner`, and by
  :mod:`~dlcr.generation.released_format` on import.

The masks and description tables have one writer (their stage runs in one process) and no lock
file; the generation table has many and locks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from dlcr.errors import InputError
from dlcr.io.tables import read_arrow_file, write_table

log = logging.getLogger(__name__)  # dlcr.io.parts_table: under the package's 'dlcr' logger

ON_DAMAGE = ("raise", "skip")
_SEQ = itertools.count(1)  # part names of one process never repeat, whichever table writes them


@dataclass(frozen=True)
class Committed:
    """What a table holds on disk: its main table (None when not written yet), its part tables and
    the part files they were read from (in name order), and the part files ignored as damaged
    (``on_damage="skip"``; a consolidation deletes them too)."""

    main: pa.Table | None
    parts: list[pa.Table]
    files: list[Path]
    damaged: list[Path] = field(default_factory=list)

    def tables(self) -> list[pa.Table]:
        """The main table (if any), then the parts."""
        return ([self.main] if self.main is not None else []) + self.parts


class PartsTable:
    """``folder/name`` grown in part files under ``folder/parts_dir`` (default ``.<stem>.parts``).

    ``schema``: the main table's; ``part_schema``: the parts' (default ``schema``; it may add
    columns, e.g. a status). ``key``: the column that names a row. ``lock``: the lock file's name in
    ``folder`` for tables with concurrent writers (None: one writer, no lock file). ``on_damage``:
    an unreadable file is an :class:`InputError` (``raise``) or is ignored with a warning
    (``skip``: its rows are simply redone).
    """

    def __init__(self, folder: str | os.PathLike, name: str, schema: pa.Schema, key: str, *,
                 parts_dir: str | None = None, part_schema: pa.Schema | None = None, lock: str | None = None,
                 on_damage: str = "raise"):
        if on_damage not in ON_DAMAGE:
            raise ValueError(f"on_damage must be one of {ON_DAMAGE}, got {on_damage!r}")
        self.folder = Path(folder)
        self.path = self.folder / name
        self.parts_dir = self.folder / (parts_dir or f".{Path(name).stem}.parts")
        self.schema = schema
        self.part_schema = part_schema or schema
        if key not in schema.names or key not in self.part_schema.names:
            raise ValueError(f"key {key!r} is not a column of the table")
        self.key = key
        self.lock_path = self.folder / lock if lock else None
        self.on_damage = on_damage

    # ------------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def locked(self, exclusive: bool = False) -> Iterator[None]:
        """An advisory lock on the table (shared for readers, exclusive for merging); a no-op without
        a lock file or off POSIX. Not re-entrant: :meth:`read` inside it, never :meth:`load`."""
        if self.lock_path is None:
            yield
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no lock
            yield
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------------- writing
    def part_files(self) -> list[Path]:
        """The committed part files, in name order (temp files of unfinished writes are not listed)."""
        d = self.parts_dir
        return sorted(d.glob("*.parquet")) if d.is_dir() else []

    def _as_table(self, rows: Sequence[Mapping[str, Any]] | pa.Table, schema: pa.Schema) -> pa.Table:
        if isinstance(rows, pa.Table):
            return rows.select(schema.names).cast(schema)
        return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)

    def write_part(self, rows: Sequence[Mapping[str, Any]] | pa.Table, name: str | None = None) -> Path | None:
        """Commit ``rows`` as one part file, atomically; its path (None for no rows).

        ``name`` (a file name ending ``.parquet``) must be one no other writer uses; the default is
        unique (``part-<time ns>-<pid>-<seq>-<random>.parquet``, in commit order when sorted)."""
        table = self._as_table(rows, self.part_schema)
        if table.num_rows == 0:
            return None
        if name is None:
            name = f"part-{time.time_ns():020d}-{os.getpid()}-{next(_SEQ):06d}-{secrets.token_hex(2)}.parquet"
        if Path(name).name != name or not name.endswith(".parquet") or name.startswith("."):
            raise InputError(f"part name {name!r} is not a plain .parquet file name")
        path = self.parts_dir / name
        write_table(path, table)
        return path

    # ------------------------------------------------------------------------- reading
    def _read_file(self, path: Path, columns: Sequence[str] | None, need: Sequence[str]) -> pa.Table | None:
        try:
            table = read_arrow_file(path, columns)
        except FileNotFoundError:  # merged and deleted by a consolidation meanwhile
            return None
        except Exception as e:  # written atomically, so this is damage from outside
            if self.on_damage == "raise":
                raise
            log.warning("ignoring unreadable %s (%s)", path, e)
            return None
        lacking = sorted(set(need) - set(table.column_names))
        if lacking and self.on_damage == "skip":
            log.warning("ignoring %s: it lacks columns %s", path, lacking)
            return None
        return table

    def read(self, columns: Sequence[str] | None = None, part_columns: Sequence[str] | None = None) -> Committed:
        """The main table and the parts, column-wise (``columns`` of the main table, ``part_columns``
        of the parts, default ``columns``; None: all). Takes no lock: hold :meth:`locked` around it
        when other processes may consolidate."""
        part_columns = columns if part_columns is None else part_columns
        main = self._read_file(self.path, columns, columns or self.schema.names) if self.path.is_file() else None
        files, parts, damaged = [], [], []
        for p in self.part_files():
            t = self._read_file(p, part_columns, part_columns or self.part_schema.names)
            if t is not None:
                files.append(p)
                parts.append(t)
            elif p.exists():
                damaged.append(p)
        return Committed(main, parts, files, damaged)

    def load(self) -> dict[Any, dict[str, Any]]:
        """``key -> row`` (the schema's columns) of everything committed; a later part wins over the
        main table and earlier parts. Holds the shared lock."""
        with self.locked():
            committed = self.read(self.schema.names)
        rows: dict[Any, dict[str, Any]] = {}
        for t in committed.tables():
            for r in t.select(self.schema.names).to_pylist():
                rows[r[self.key]] = r
        return rows

    def keys(self) -> set[Any]:
        """The keys of everything committed (column-wise: no row objects). Holds the shared lock."""
        with self.locked():
            committed = self.read([self.key])
        out: set[Any] = set()
        for t in committed.tables():
            out.update(t.column(self.key).to_pylist())
        return out

    # ------------------------------------------------------------------------- merging
    def merge_by_key(self, committed: Committed) -> pa.Table:
        """The default merge: one row per key (a later part wins), sorted by key."""
        tables = [t.select(self.schema.names).cast(self.schema) for t in committed.tables()]
        if not tables:
            return self.schema.empty_table()
        merged = pa.concat_tables(tables)
        last = {k: i for i, k in enumerate(merged.column(self.key).to_pylist())}
        return merged.take(pa.array(list(last.values()), pa.int64())).sort_by(self.key).combine_chunks()

    def _drop(self, files: Iterable[Path]) -> None:
        for p in files:
            p.unlink(missing_ok=True)
        # with concurrent writers the folder stays: one may be about to create its temp file there
        if self.lock_path is None and self.parts_dir.is_dir():
            with contextlib.suppress(OSError):
                self.parts_dir.rmdir()  # only when empty

    def consolidate(self, merge: Callable[[Committed], pa.Table] | None = None, *,
                    rows: Sequence[Mapping[str, Any]] | None = None) -> Path:
        """Write the main table, then delete the parts merged into it; under the exclusive lock.

        ``merge`` turns what is committed into the new main table (default :meth:`merge_by_key`;
        it runs under the lock and may write other files of the folder). ``rows`` instead gives the
        whole new table, for a one-writer stage that holds everything committed in memory; the parts
        present now are then deleted. Parts ignored as damaged (``on_damage="skip"``) are deleted
        too. Idempotent; safe while other processes commit parts."""
        with self.locked(exclusive=True):
            if rows is not None:
                files = self.part_files()
                table = self._as_table(rows, self.schema)
            else:
                committed = self.read()
                files = committed.files + committed.damaged
                table = (merge or self.merge_by_key)(committed)
            write_table(self.path, table)
            self._drop(files)
        return self.path

    def remove(self, also: Iterable[Path] = ()) -> None:
        """Delete the main table, the parts (temp files included) and the paths ``also`` (files or
        folders), under the exclusive lock (``overwrite``)."""
        with self.locked(exclusive=True):
            for p in [self.parts_dir, *also]:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)
