"""Time and peak memory of the generation bookkeeping at CCVID size, against the per-row code it replaced.

A synthetic CCVID-like training set (75 identities, 3 outfits each, ~1,580 frames per identity,
frames as :class:`~dlcr.types.Sample`, one prompt per clothes key) is planned with K=10 variants per
frame: 118,613 frames -> 1,186,130 jobs. Steps, each in its own ``spawn`` child process (peak = the
child's ``ru_maxrss``, imports and inputs included), a warm-up then the median of ``--repeat`` runs:

* plan: ``plan_jobs`` (no reference: it is the plain loop);
* write / read ``jobs.parquet``: ``write_jobs`` / ``read_jobs`` against the per-row versions
  (``dlcr.testing.bookkeeping_reference``: one dict / ``Job.from_dict`` per row);
* plan hash: the plan-content hash a resume computes for the generation signature (no reference);
* commit: ``commit_part`` of the ``--parted`` jobs in parts of ``--batch`` rows into an empty folder
  (the writes of the workers: one atomic part file per batch; no reference);
* resume: ``committed_job_ids`` on a work folder holding ``--committed`` committed jobs whose (empty)
  image files exist in the runner's layout, ``--parted`` of them still in part files of ``--batch``
  rows (a killed run), the rest in ``manifest.parquet``; against the per-row version (a dict and a
  ``Path.is_file`` per row);
* consolidate: ``consolidate_manifest`` of that folder (restored before every run), against the per-row
  version; the two manifests are checked to be byte-identical.

    python benchmarks/scale_jobs.py            # 1,186,130 jobs, 1,000,000 committed files (~15 min)
    python benchmarks/scale_jobs.py --small    # ~20k jobs, 15k committed
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CCVID_JOBS = 1_186_130
IDS, OUTFITS_PER_ID = 75, 3
COLOURS = ("red", "blue", "green", "black", "white", "gray", "navy", "brown", "pink", "yellow")
UPPER = ("t-shirt", "shirt", "hoodie", "jacket", "sweater", "coat")
LOWER = ("jeans", "trousers", "shorts", "skirt")


def synthetic_training_set(n_images: int) -> tuple[list[Any], dict[str, str]]:
    """``n_images`` frames of ``IDS`` identities x ``OUTFITS_PER_ID`` outfits (CCVID-like paths) and a
    prompt per clothes key."""
    from dlcr.types import Sample

    n_keys = IDS * OUTFITS_PER_ID
    outfits = {}
    for c in range(n_keys):
        pid, o = divmod(c, OUTFITS_PER_ID)
        outfits[f"{pid:03d}_{o}"] = (f"a person wearing {COLOURS[c % 10]} {UPPER[c % 6]}, "
                                     f"{COLOURS[(c // 10) % 10]} {LOWER[c % 4]}, {COLOURS[(c // 3) % 10]} sneakers")
    samples = []
    for i in range(n_images):
        c = i * n_keys // n_images  # consecutive frames share an outfit, as in a video
        pid, o = divmod(c, OUTFITS_PER_ID)
        seq = (i // 120) % 100  # ~120 frames per tracklet
        samples.append(Sample(path=f"CCVID/session{o + 1}/{pid + 1:03d}_{seq + 1:02d}/{i:06d}.jpg", pid=pid,
                              camid=seq % 2, clothes_id=c, split="train", clothes_key=f"{pid:03d}_{o}"))
    return samples, outfits


def _plan(n_jobs: int) -> list[Any]:
    from dlcr.generation.planning import plan_jobs

    samples, outfits = synthetic_training_set(-(-n_jobs // 10))
    return plan_jobs(samples, outfits, k=10, seed=0, dataset="ccvid", generator="recolor")[:n_jobs]


# ----------------------------------------------------------------------------- steps (in children)
def _step(name: str, impl: str, ctx: dict[str, Any]) -> tuple[Any, Any]:
    """(the timed call, a restore-before-each-run call or None) of one step."""
    from dlcr.generation import outputs, planning, runner
    from dlcr.testing import bookkeeping_reference as ref

    new = impl == "new"
    tmp = Path(ctx["tmp"])
    if name == "plan":
        samples, outfits = synthetic_training_set(-(-ctx["jobs"] // 10))
        return (lambda: planning.plan_jobs(samples, outfits, k=10, seed=0, dataset="ccvid",
                                           generator="recolor")), None
    if name == "write":
        jobs = planning.read_jobs(tmp / "jobs.parquet")
        fn = planning.write_jobs if new else ref.write_jobs_reference
        return (lambda: fn(tmp / f"jobs_{impl}.parquet", jobs)), None
    if name == "read":
        fn = planning.read_jobs if new else ref.read_jobs_reference
        return (lambda: fn(tmp / "jobs.parquet")), None
    if name == "plan_hash":
        jobs = planning.read_jobs(tmp / "jobs.parquet")
        return (lambda: runner.plan_hash(jobs)), None
    work = tmp / "work"
    if name == "commit":
        from dlcr.io.tables import read_table

        rows, batch, dest = read_table(tmp / "parted.parquet"), ctx["batch"], tmp / "commit"

        def commit() -> int:
            for start in range(0, len(rows), batch):
                outputs.commit_part(dest, rows[start:start + batch])
            return len(list((dest / outputs.PARTS_DIR).glob("*.parquet")))

        return commit, lambda: shutil.rmtree(dest, ignore_errors=True)
    if name == "committed":
        fn = outputs.committed_job_ids if new else ref.committed_job_ids_reference
        return (lambda: len(fn(work))), None
    if name == "consolidate":
        fn = outputs.consolidate_manifest if new else ref.consolidate_manifest_reference

        def restore() -> None:
            shutil.copy2(tmp / "manifest.saved", work / outputs.GENERATED_MANIFEST)
            if (work / outputs.PARTS_DIR).exists():
                shutil.rmtree(work / outputs.PARTS_DIR)
            shutil.copytree(tmp / "parts.saved", work / outputs.PARTS_DIR)

        def run() -> str:
            fn(work)
            return hashlib.sha256((work / outputs.GENERATED_MANIFEST).read_bytes()).hexdigest()[:16]

        return run, restore
    raise ValueError(name)


def _child(name: str, impl: str, ctx: dict[str, Any], queue: Any) -> None:
    fn, restore = _step(name, impl, ctx)
    times, out = [], None
    for _ in range(1 + ctx["repeat"]):  # a warm-up, then the timed runs
        if restore is not None:
            restore()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    queue.put((statistics.median(times[1:]), peak_gb, out if isinstance(out, (int, str)) else None))


def measure(name: str, impl: str, ctx: dict[str, Any]) -> tuple[float, float, Any]:
    """(median seconds, peak GB, result summary) of a step, in a fresh spawned process."""
    mpc = mp.get_context("spawn")
    queue = mpc.Queue()
    proc = mpc.Process(target=_child, args=(name, impl, ctx, queue))
    proc.start()
    res = queue.get()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"step {name} ({impl}) failed with exit code {proc.exitcode}")
    return res


# ----------------------------------------------------------------------------- the work folder
def make_work_folder(tmp: Path, committed: int, parted: int, batch: int) -> int:
    """``tmp/work``: ``committed`` jobs of ``tmp/jobs.parquet`` with empty image files in the runner's
    layout, the last ``parted`` of them in part files of ``batch`` rows, the others in the manifest;
    copies of the manifest and parts to restore them. Returns the number of folders made."""
    import pyarrow as pa

    from dlcr.generation import outputs
    from dlcr.io.tables import read_arrow, write_table

    work = tmp / "work"
    jobs = read_arrow(tmp / "jobs.parquet").slice(0, committed)
    sources, variants, ids = (jobs.column(c).to_pylist() for c in ("source", "variant", "job_id"))
    files, dirs = [], set()
    for s, v, jid in zip(sources, variants, ids, strict=True):
        stem = s.rsplit(".", 1)[0]
        files.append(f"{outputs.IMAGES_DIR}/{stem}/{v:02d}_{jid}.png")
        d = f"{work}/{outputs.IMAGES_DIR}/{stem}"
        if d not in dirs:
            os.makedirs(d, exist_ok=True)
            dirs.add(d)
        os.close(os.open(f"{work}/{files[-1]}", os.O_CREAT | os.O_WRONLY, 0o644))
    n = jobs.num_rows
    table = jobs.append_column("file", pa.array(files))
    for col, val in (("width", 256), ("height", 768)):
        table = table.append_column(col, pa.array([val] * n, pa.int64()))
    for col, val in (("backend", "recolor"), ("model", "recolor(shading=1,jitter=0.1)"),
                     ("signature", "0123456789abcdef")):
        table = table.append_column(col, pa.array([val] * n))
    table = table.select(outputs.MANIFEST_SCHEMA.names).cast(outputs.MANIFEST_SCHEMA)
    head = table.slice(0, n - parted).sort_by([(c, "ascending") for c in ("kind", "source", "variant", "job_id")])
    write_table(work / outputs.GENERATED_MANIFEST, head.combine_chunks())
    tail = table.slice(n - parted).append_column("status", pa.array([outputs.STATUS_OK] * parted))
    write_table(tmp / "parted.parquet", tail)  # the rows the "commit" step commits again, into another folder
    for start in range(0, parted, batch):
        outputs.commit_part(work, tail.slice(start, batch).to_pylist())
    shutil.copy2(work / outputs.GENERATED_MANIFEST, tmp / "manifest.saved")
    shutil.copytree(work / outputs.PARTS_DIR, tmp / "parts.saved")
    return len(dirs)


# ----------------------------------------------------------------------------- main
def _row(step: str, sec: float, gb: float, ref: tuple[float, float, Any] | None = None) -> None:
    ratio = f"x{ref[0] / sec:5.1f} faster, x{ref[1] / gb:4.1f} less memory" if ref else ""
    print(f"  {step:<44s} {sec:9.2f} s {gb:7.2f} GB  {ratio}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=CCVID_JOBS)
    ap.add_argument("--committed", type=int, default=1_000_000)
    ap.add_argument("--parted", type=int, default=50_000, help="committed jobs still in part files")
    ap.add_argument("--batch", type=int, default=16, help="rows per part file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="~20k jobs, 15k committed")
    ap.add_argument("--part", choices=("jobs",), default="jobs", help="(for bench_scale.py) the generation half")
    ap.add_argument("--no-reference", action="store_true", help="skip the per-row reference runs")
    args = ap.parse_args(argv)
    if args.small:
        args.jobs, args.committed, args.parted = 20_000, 15_000, 2_000
    args.committed = min(args.committed, args.jobs)
    args.parted = min(args.parted, args.committed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still removes its files
    tmp = Path(tempfile.mkdtemp(prefix="dlcr-scale-jobs-", dir="/tmp"))
    ctx = {"tmp": str(tmp), "jobs": args.jobs, "repeat": args.repeat, "batch": args.batch}
    print(f"{args.jobs:,} jobs ({-(-args.jobs // 10):,} frames x K=10, {IDS * OUTFITS_PER_ID} outfits), "
          f"{args.committed:,} committed ({args.parted:,} in parts of {args.batch}); median of {args.repeat} "
          f"after a warm-up, each step in a fresh process; load {os.getloadavg()[0]:.1f}")
    print(f"  {'step':<44s} {'median':>11s} {'peak':>10s}  vs the per-row reference")
    try:
        from dlcr.generation.planning import write_jobs

        write_jobs(tmp / "jobs.parquet", _plan(args.jobs))  # inputs of the later steps (untimed)
        sec, gb, _ = measure("plan", "new", {**ctx, "jobs": args.jobs})
        _row("plan_jobs", sec, gb)
        for step, label in (("write", "write jobs.parquet"), ("read", "read jobs.parquet")):
            ref = None if args.no_reference else measure(step, "ref", ctx)
            new = measure(step, "new", ctx)
            if ref:
                _row(label + " (per-row reference)", *ref[:2])
            _row(label, *new[:2], ref)
        if not args.no_reference:
            assert (tmp / "jobs_new.parquet").read_bytes() == (tmp / "jobs_ref.parquet").read_bytes()
        _row("plan hash (resume: generation signature)", *measure("plan_hash", "new", ctx)[:2])
        t0 = time.perf_counter()
        n_dirs = make_work_folder(tmp, args.committed, args.parted, args.batch)
        print(f"  (made {args.committed:,} empty images in {n_dirs:,} folders and "
              f"{-(-args.parted // args.batch):,} parts in {time.perf_counter() - t0:.0f} s)")
        _row(f"commit {args.parted:,} jobs in parts of {args.batch}", *measure("commit", "new", ctx)[:2])
        for step, label in (("committed", "resume: committed set"), ("consolidate", "consolidate manifest")):
            ref = None if args.no_reference else measure(step, "ref", ctx)
            new = measure(step, "new", ctx)
            if ref:
                _row(label + " (per-row reference)", *ref[:2])
                if ref[2] != new[2]:
                    raise SystemExit(f"MISMATCH in {step}: reference {ref[2]} vs {new[2]}")
            _row(label, *new[:2], ref)
            if step == "committed" and new[2] != args.committed:
                raise SystemExit(f"committed set holds {new[2]} jobs, expected {args.committed}")
        print(f"  load {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
