"""The committed-parts table (:mod:`dlcr.io.parts_table`) on its own: concurrent writers, a crash at
every step between a part's write and its consolidation, idempotent consolidation, damaged files."""

from __future__ import annotations

import logging
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dlcr.errors import InputError
from dlcr.generation import parsing
from dlcr.generation.parsing import MASKS_TABLE, HumanParser, label_path, masks_table, parse_dataset
from dlcr.io import parts_table
from dlcr.io.images import write_png
from dlcr.io.parts_table import PartsTable
from dlcr.io.tables import read_table

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])
PART_SCHEMA = SCHEMA.append(pa.field("status", pa.string()))


def _table(folder: Path, **kw) -> PartsTable:
    return PartsTable(folder, "items.parquet", SCHEMA, "key", **kw)


def _rows(prefix: str, n: int, value: int = 0) -> list[dict]:
    return [{"key": f"{prefix}{i:04d}", "value": value + i} for i in range(n)]


def _writer(folder: str, name: str, parts: int, rows: int) -> None:
    tbl = _table(Path(folder), lock=".items.lock")
    for p in range(parts):
        tbl.write_part(_rows(f"{name}-{p:03d}-", rows))


def _consolidator(folder: str, stop: str) -> None:
    tbl = _table(Path(folder), lock=".items.lock")
    while not Path(stop).exists():
        tbl.consolidate()


def test_concurrent_writers_and_a_consolidator_lose_nothing_and_readers_never_go_back(tmp_path):
    folder, stop = tmp_path / "t", tmp_path / "stop"
    ctx = mp.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(folder), f"w{i}", 40, 5)) for i in range(3)]
    merger = ctx.Process(target=_consolidator, args=(str(folder), str(stop)))
    for p in [*writers, merger]:
        p.start()
    tbl = _table(folder, lock=".items.lock")
    seen: set[str] = set()
    reads = 0
    while any(p.is_alive() for p in writers):
        now = tbl.keys()
        assert seen <= now, f"{len(seen - now)} committed keys vanished while parts were merged"
        seen, reads = now, reads + 1
    stop.touch()
    for p in [*writers, merger]:
        p.join(60)
        assert p.exitcode == 0
    assert reads > 1
    tbl.consolidate()
    rows = read_table(tbl.path)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 40 * 5 and keys == sorted(keys)
    assert tbl.part_files() == [] and tbl.parts_dir.is_dir()  # a locked table keeps its parts folder


def test_a_kill_after_parts_were_written_loses_nothing(tmp_path):
    folder = tmp_path / "t"
    code = (f"from pathlib import Path; import os, pyarrow as pa; from dlcr.io.parts_table import PartsTable\n"
            f"t = PartsTable(Path({str(folder)!r}), 'items.parquet', "
            f"pa.schema([('key', pa.string()), ('value', pa.int64())]), 'key')\n"
            f"t.write_part([{{'key': 'a', 'value': 1}}]); t.write_part([{{'key': 'b', 'value': 2}}])\n"
            f"os._exit(9)  # killed before any consolidation\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9
    tbl = _table(folder)
    assert not tbl.path.exists() and len(tbl.part_files()) == 2
    assert tbl.load() == {"a": {"key": "a", "value": 1}, "b": {"key": "b", "value": 2}}
    tbl.consolidate()
    assert read_table(tbl.path) == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]
    assert not tbl.parts_dir.exists()  # a one-writer table removes its emptied parts folder


@pytest.mark.parametrize("lock", [None, ".items.lock"])
def test_a_crash_inside_consolidation_loses_nothing_and_a_retry_finishes(tmp_path, monkeypatch, lock):
    tbl = _table(tmp_path, lock=lock)
    tbl.write_part(_rows("a", 3))
    tbl.consolidate()
    tbl.write_part(_rows("b", 2))
    tbl.write_part(_rows("a", 1, value=100))  # a later part overrides a row of the main table
    want = {**{r["key"]: r for r in _rows("a", 3)}, **{r["key"]: r for r in _rows("b", 2)},
            "a0000": {"key": "a0000", "value": 100}}
    before = tbl.path.read_bytes()

    def no_write(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(parts_table, "write_table", no_write)  # crash before the main table is replaced
    with pytest.raises(OSError):
        tbl.consolidate()
    monkeypatch.undo()
    assert tbl.path.read_bytes() == before and len(tbl.part_files()) == 2 and tbl.load() == want

    def no_drop(self, files):
        raise KeyboardInterrupt

    monkeypatch.setattr(PartsTable, "_drop", no_drop)  # crash after it, before the parts are deleted
    with pytest.raises(KeyboardInterrupt):
        tbl.consolidate()
    monkeypatch.undo()
    assert tbl.path.read_bytes() != before and len(tbl.part_files()) == 2 and tbl.load() == want
    tbl.consolidate()
    merged = tbl.path.read_bytes()
    assert tbl.part_files() == [] and tbl.load() == want
    tbl.consolidate()  # idempotent: same bytes
    assert tbl.path.read_bytes() == merged
    assert [r["key"] for r in read_table(tbl.path)] == sorted(want)


def test_a_custom_merge_or_the_whole_rows_and_remove(tmp_path):
    tbl = PartsTable(tmp_path, "items.parquet", SCHEMA, "key", parts_dir="parts", part_schema=PART_SCHEMA,
                     lock=".lock")
    tbl.write_part([{"key": "x", "value": 1, "status": "ok"}, {"key": "y", "value": 2, "status": "skip"}],
                   name="x.parquet")
    assert tbl.part_files() == [tmp_path / "parts" / "x.parquet"]
    assert set(tbl.read().parts[0].column_names) == {"key", "value", "status"}

    def only_ok(committed):
        t = pa.concat_tables([p.filter(pc.equal(p.column("status"), "ok")) for p in committed.parts])
        return t.select(SCHEMA.names)

    tbl.consolidate(only_ok)
    assert read_table(tbl.path) == [{"key": "x", "value": 1}] and tbl.keys() == {"x"}
    tbl.write_part([{"key": "z", "value": 3, "status": "ok"}])
    tbl.consolidate(rows=[{"key": "q", "value": 0}])  # the caller's whole table; present parts dropped
    assert read_table(tbl.path) == [{"key": "q", "value": 0}] and tbl.part_files() == []
    other = tmp_path / "images"
    other.mkdir()
    tbl.write_part([{"key": "z", "value": 3, "status": "ok"}])
    tbl.remove(also=[other, tmp_path / "missing.parquet"])
    assert not tbl.path.exists() and not tbl.parts_dir.exists() and not other.exists()
    assert tbl.load() == {} and tbl.consolidate() == tbl.path and read_table(tbl.path) == []


def test_part_names_are_unique_in_commit_order_and_checked(tmp_path):
    tbl = _table(tmp_path)
    paths = [tbl.write_part(_rows(f"k{i}", 1)) for i in range(5)]
    assert paths == tbl.part_files() and len(set(paths)) == 5
    assert all(p.name.startswith("part-") for p in paths)
    assert tbl.write_part([]) is None
    for bad in ("../x.parquet", "sub/x.parquet", "x.csv", ".x.parquet"):
        with pytest.raises(InputError, match="not a plain"):
            tbl.write_part(_rows("k", 1), name=bad)
    with pytest.raises(ValueError, match="on_damage"):
        _table(tmp_path, on_damage="ignore")
    with pytest.raises(ValueError, match="not a column"):
        PartsTable(tmp_path, "t.parquet", SCHEMA, "nope")


def test_damaged_files_are_an_error_or_skipped_with_a_warning(tmp_path, caplog):
    strict, lenient = _table(tmp_path / "a"), _table(tmp_path / "b", on_damage="skip")
    for tbl in (strict, lenient):
        tbl.write_part(_rows("a", 2))
        good = tbl.write_part(_rows("b", 2))
        (tbl.parts_dir / "part-bad.parquet").write_bytes(good.read_bytes()[:20])  # truncated from outside
    with pytest.raises(InputError, match=r"cannot read table .*part-bad\.parquet"):
        strict.load()
    with pytest.raises(InputError, match="part-bad"):
        strict.consolidate()
    assert len(strict.part_files()) == 3  # nothing was deleted
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        assert set(lenient.load()) == {"a0000", "a0001", "b0000", "b0001"}
    assert "ignoring unreadable" in caplog.text and "part-bad" in caplog.text
    pa_table = pa.table({"key": ["c"]})  # a part of another schema: lacks a column
    pq.write_table(pa_table, lenient.parts_dir / "part-old.parquet")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        assert "c" not in lenient.load()
    assert "part-old" in caplog.text
    lenient.consolidate()
    assert lenient.part_files() == [] and len(read_table(lenient.path)) == 4
    lenient.path.write_bytes(b"not parquet")  # a damaged main table: ignored, its rows are redone
    assert lenient.load() == {}


def test_reading_a_part_merged_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    tbl = _table(tmp_path, lock=".items.lock")
    first = tbl.write_part(_rows("a", 1))
    tbl.write_part(_rows("b", 1))
    listed = tbl.part_files()
    first.unlink()  # a consolidation deleted it between the listing and the read
    monkeypatch.setattr(PartsTable, "part_files", lambda self: listed)
    assert tbl.keys() == {"b0000"}


# ----------------------------------------------------------------------------- its users
class _HalfClothes(HumanParser):
    """Upper half upper-clothes (LIP 5), lower half background; fails after ``fail_after`` batches."""

    name = "half"

    def __init__(self, fail_after: int | None = None):
        self.batch_size, self.fail_after, self.seen = 1, fail_after, 0

    def parse(self, images):
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("killed")
        self.seen += len(images)
        out = []
        for img in images:
            lab = np.zeros(img.shape[:2], np.uint8)
            lab[: img.shape[0] // 2] = 5
            out.append(lab)
        return out


@pytest.fixture
def images(tmp_path):
    paths = [f"train/{i:03d}.png" for i in range(4)]
    for i, p in enumerate(paths):
        write_png(tmp_path / "data" / p, np.full((4 + 2 * i, 3, 3), 120, np.uint8))
    return tmp_path / "data", paths


def test_masks_commit_every_batch_and_a_killed_run_reuses_the_counts(images, tmp_path, monkeypatch):
    root, paths = images
    out = tmp_path / "masks"
    with pytest.raises(RuntimeError, match="killed"):
        parse_dataset(_HalfClothes(fail_after=3), paths, root, out)
    table = masks_table(out)
    assert not table.path.exists() and set(table.load()) == set(paths[:3])  # three committed batches
    reads = []
    monkeypatch.setattr(parsing, "read_label_map", lambda p: reads.append(p))
    rep = parse_dataset(_HalfClothes(), paths, root, out)
    assert (rep.done, rep.skipped_existing) == (1, 3) and reads == []  # counts reused, maps not re-read
    rows = read_table(out / MASKS_TABLE)
    assert [r["path"] for r in rows] == paths and [r["clothes_pixels"] for r in rows] == [6, 9, 12, 15]
    assert not table.parts_dir.exists()


def test_a_masks_folder_of_the_older_layout_resumes(images, tmp_path):
    """Before part files a masks folder held label maps and, after a complete run, masks.parquet: a
    killed run left label maps without a table, which must resume by reading the maps."""
    root, paths = images
    out = tmp_path / "masks"
    parse_dataset(_HalfClothes(), paths, root, out)
    full = (out / MASKS_TABLE).read_bytes()
    (out / MASKS_TABLE).unlink()  # the older code's killed run: label maps only
    label_path(out, paths[3]).unlink()
    parser = _HalfClothes()
    rep = parse_dataset(parser, paths, root, out)
    assert (rep.done, rep.skipped_existing, parser.seen) == (1, 3, 1)
    assert (out / MASKS_TABLE).read_bytes() == full
