"""Released DLCR data into a work folder: from a local folder or from a Hugging Face hub dataset.

The DLCR authors link their generated data from the README of their code (github CroitoruAlin/dlcr)
as the hub dataset :data:`DLCR_HUB_DATASET`; the README describes the released layout (one strip of
10 variants plus one txt of ``upper| lower| footwear`` lines per training image, in the original
dataset's folders, see :mod:`dlcr.generation.released_format`) but not how the repository is split
into benchmarks. **Layout assumed**: one top-level folder per benchmark (``<benchmark>/...``) holding
that layout. :func:`fetch_benchmark` downloads only ``<benchmark>/**`` with
``huggingface_hub.snapshot_download`` into the user's Hugging Face cache (the hub client resumes an
interrupted download and honours ``HF_HUB_OFFLINE``; no remote code is involved), and
:func:`import_into_work` imports the strips into ``<work>/generated/`` (what ``dlcr train`` reads),
with a generation signature like the other stages: a different source is refused unless
``overwrite``. Every check that can fail runs before anything is written.

``huggingface_hub`` is imported only when a hub dataset is asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcr.errors import ConfigError, DatasetError, InputError, did_you_mean, examples_note, first_line
from dlcr.generation.layout import GENERATED
from dlcr.generation.outputs import GeneratedRecord, committed_job_ids, remove_outputs
from dlcr.generation.released_format import find_pairs, import_released, match_samples
from dlcr.generation.signature_record import check_signature, signature_file
from dlcr.types import Sample

#: The hub dataset the DLCR authors publish their generated data in (linked from their README).
DLCR_HUB_DATASET = "ihaveamoose/DLCR"

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_. -]*$")


@dataclass(frozen=True)
class ReleasedSource:
    """Where released data are read from: ``folder`` (the released layout's root), ``trust_root``
    (every file must resolve inside it) and what the import's signature records about the source."""

    folder: Path
    trust_root: Path
    origin: dict[str, Any] = field(default_factory=dict)


def local_source(folder: str | os.PathLike) -> ReleasedSource:
    """A local folder in the released layout (its files must stay inside it)."""
    p = Path(folder)
    if not p.is_dir():
        raise DatasetError(f"released data folder not found: {p}")
    return ReleasedSource(p, p, {"folder": str(p.resolve())})


def hub_origin(repo_id: str, benchmark: str, revision: str | None) -> dict[str, Any]:
    """What the signature of an import from the hub records (the revision asked for)."""
    return {"hub": repo_id, "benchmark": benchmark, "revision": revision or "main"}


def check_benchmark(name: str) -> str:
    """``name`` as a folder path of the hub dataset (``PRCC`` or ``PRCC/train``): plain names only,
    no glob characters, ``..`` or absolute paths (it becomes the download pattern ``<name>/**``)."""
    parts = str(name).strip().rstrip("/").split("/")
    if not name or not all(_COMPONENT.match(p) and p not in (".", "..") for p in parts):
        raise ConfigError(f"--benchmark must name a folder of the hub dataset (letters, digits, '_', '-', '.', "
                          f"'/' between folders), got {name!r}")
    return "/".join(parts)


def hub_offline(local_files_only: bool = False) -> bool:
    """Whether the hub may not be reached: ``local_files_only`` or ``HF_HUB_OFFLINE`` set true."""
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_error(e: Exception, repo_id: str, benchmark: str, revision: str | None, offline: bool) -> Exception:
    """One-line error for a failed ``snapshot_download`` (the exception itself when it is no hub,
    network or file-system failure: a bug stays a traceback)."""
    names = {c.__name__ for c in type(e).__mro__}
    module = type(e).__module__ or ""
    what = f"{benchmark!r} of hub dataset {repo_id}" + (f" at revision {revision!r}" if revision else "")
    if "RevisionNotFoundError" in names:
        return InputError(f"revision {revision or 'main'!r} not found in hub dataset {repo_id}")
    if names & {"RepositoryNotFoundError", "GatedRepoError"}:
        return InputError(f"hub dataset {repo_id} not found, or private or gated (if you have access, log in "
                          "with `hf auth login`)")
    if "HFValidationError" in names:
        return ConfigError(f"--hub must be a hub dataset id such as {DLCR_HUB_DATASET}, got {repo_id!r}")
    if names & {"LocalEntryNotFoundError", "IncompleteSnapshotError", "OfflineModeIsEnabled"} and offline:
        return InputError(f"no complete cached copy of {what} and the hub may not be reached (HF_HUB_OFFLINE or "
                          "--offline); run once with network access, the download resumes where it stopped")
    if isinstance(e, OSError) or module.split(".")[0] in {"huggingface_hub", "httpx", "httpx2", "requests", "urllib3"}:
        return InputError(f"cannot download {what}: {first_line(e)} (run again to resume)")
    return e


def _top_folders(repo_id: str, revision: str | None) -> list[str]:
    """Top-level folders of the hub dataset as its cached tree listing names them ([] when unknown)."""
    try:
        import huggingface_hub

        files = huggingface_hub.get_cached_repo_tree(repo_id, repo_type="dataset", revision=revision)
        return sorted({f.path.split("/", 1)[0] for f in files if "/" in f.path})
    except Exception:  # noqa: BLE001 - a suggestion only: older hub clients or no cached listing
        return []


def fetch_benchmark(repo_id: str, benchmark: str, *, revision: str | None = None,
                    local_files_only: bool = False, cache_dir: str | os.PathLike | None = None) -> ReleasedSource:
    """Download (or find in the cache) the files of ``<benchmark>/`` of hub dataset ``repo_id``."""
    benchmark = check_benchmark(benchmark)
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("--hub needs the huggingface_hub package: pip install huggingface_hub") from None
    offline = hub_offline(local_files_only)
    try:
        snap = Path(huggingface_hub.snapshot_download(
            repo_id, repo_type="dataset", revision=revision, allow_patterns=[f"{benchmark}/**"],
            local_files_only=offline, cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001 - classified: hub and network failures become one line
        raise _hub_error(e, repo_id, benchmark, revision, offline) from None
    folder = snap / benchmark
    if not folder.is_dir():
        tops = _top_folders(repo_id, revision)
        lower = {t.lower(): t for t in tops}
        hint = (f" (did you mean {lower[benchmark.lower()]!r}?)" if benchmark.lower() in lower
                else did_you_mean(benchmark, tops))
        listed = f"; its top-level folders: {', '.join(tops)}" if tops else ""
        raise InputError(f"hub dataset {repo_id} has no folder {benchmark!r}{hint}{listed}")
    # a cache snapshot's files link into <repo folder>/blobs: that folder is the trusted root
    trust = snap.parent.parent if snap.parent.name == "snapshots" else snap
    return ReleasedSource(folder, trust, hub_origin(repo_id, benchmark, revision))


def import_signature(origin: dict[str, Any], dataset: str, num_partitions: int) -> dict[str, Any]:
    """The generation signature of an import (recorded as ``generated/signature.json``)."""
    return {"importer": "released", "source": dict(origin), "dataset": dataset, "num_partitions": num_partitions}


def check_work(work: str | os.PathLike, sig: dict[str, Any], *, overwrite: bool, record: bool = False) -> str:
    """Check ``sig`` against ``<work>/generated``; with ``record`` also replace (``overwrite``) and record.

    Called once before a download (nothing written) and once before the import."""
    out = Path(work) / GENERATED
    committed = len(committed_job_ids(out, check_files=False)) if out.is_dir() else 0
    return check_signature(signature_file(out), sig, what="generated images", committed=committed,
                           overwrite=overwrite, remove=(lambda: remove_outputs(out)) if record else None,
                           record=record)


def _matched(source: ReleasedSource, samples: Sequence[Sample], dataset: str) -> int:
    """How many strips of ``source`` match a training image; refuse (nothing written) when none do."""
    rels = find_pairs(source.folder, source.trust_root)
    if not rels:
        archives = sorted(p.name for p in source.folder.iterdir() if p.name.endswith((".zip", ".tar", ".tar.gz")))
        note = f"; it holds archives{examples_note(archives)}: unpack them and use --from" if archives else ""
        raise DatasetError(f"no released strips (<name>.png with a <name>.txt beside it) under {source.folder}{note}")
    n = len(match_samples(rels, samples))
    if n == 0:
        raise DatasetError(f"none of the {len(rels)} released strips under {source.folder} is a training image of "
                           f"dataset {dataset!r}{examples_note(rels)}; check the dataset (--config / data.root) "
                           "and the released folder")
    return n  # the import warns about the strips left out


def import_into_work(source: ReleasedSource, work: str | os.PathLike, samples: Sequence[Sample], *, dataset: str,
                     num_partitions: int, overwrite: bool = False) -> list[GeneratedRecord]:
    """Import ``source``'s strips that match ``samples`` into ``<work>/generated/``."""
    _matched(source, samples, dataset)
    check_work(work, import_signature(source.origin, dataset, num_partitions), overwrite=overwrite, record=True)
    return import_released(source.folder, Path(work) / GENERATED, dataset=dataset, samples=samples,
                           num_partitions=num_partitions, trust_root=source.trust_root)
