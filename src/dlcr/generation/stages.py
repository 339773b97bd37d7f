"""The generation stages as plain functions over a *work folder* (docs/design.md §3).

A work folder holds everything DLCR derives from one dataset (its files and folders are listed in
:mod:`dlcr.generation.layout`).

Each function is idempotent and resumable: what is already committed is kept and skipped. The CLI
(``dlcr generate …``) and the demo both call these.

Signatures (:mod:`dlcr.generation.signature`): every stage records what made its outputs next to
them (``masks/signature.json``, ``captions.signature.json``, ``outfits.signature.json``,
``jobs.signature.json``, ``query_jobs.signature.json``, ``generated/signature.json``,
``query_generated/signature.json``) and checks it before any work, before any model is loaded:

- the same signature: resume (only what is missing is done);
- another one (other backend, model, option, or upstream outputs), or committed outputs without a
  signature (made by an older dlcr): a one-line ``ConfigError`` that names what differs and says to
  use a new ``--work`` folder or pass ``--overwrite``;
- another one with ``overwrite=True``: that stage's own outputs are removed first, then it runs
  from scratch (with the same signature ``overwrite`` changes nothing: the stage resumes).

Each signature holds the hash of its input stage's signature (masks -> captions -> outfits ->
plans; the inpainting stages hold the masks' hash and a hash of the job plan's content, prompts
included), so replacing one stage's outputs makes every later stage refuse until it is re-run with
``--overwrite`` too: nothing derived from replaced outputs is ever reused silently. Before a stage
reads an input it also checks that input's recorded chain, recursively (:func:`check_current`:
outfits -> captions -> masks for the plans, the plan -> outfits -> ... for inpainting): an input made
from upstream outputs that were replaced since is one ``ConfigError`` line naming the stage to re-run.
Inpainting also refuses a plan made for another backend (the jobs' ``generator``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlcr.errors import ConfigError, InputError
from dlcr.generation.layout import (
    CAPTIONS,
    GENERATED,
    JOBS,
    MASKS,
    OUTFITS,
    QUERY_GENERATED,
    QUERY_JOBS,
)
from dlcr.generation.signature import object_signature
from dlcr.generation.signature_record import (
    check_inputs_current,
    check_signature,
    recorded_hash,
    signature_file,
)
from dlcr.types import Sample
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


class PlannedJobs(list):
    """The jobs :func:`run_plan` / :func:`run_plan_queries` wrote (a plain list), with ``signature``:
    ``"same"``, ``"new"`` or ``"overwritten"`` (an earlier plan of another signature was replaced)."""

    signature: str = ""


def query_splits(splits: Mapping[str, Sequence[Sample]]) -> list[str]:
    """Names of the query splits (``query``, PRCC's ``query_same``/``query_diff``, LaST's ``val_query``)."""
    return sorted(s for s in splits if "query" in s)


def _need(path: Path, what: str, hint: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {path} not found; run `{hint}` first")
    return path


def _upstream(work: Path) -> dict[str, tuple[Path, str]]:
    """The work folder's outputs that later stages record as ``inputs``, and the stage making each."""
    return {"masks": (work / MASKS, "masks"), "captions": (work / CAPTIONS, "describe"),
            "outfits": (work / OUTFITS, "describe")}


def check_current(work: str | os.PathLike, output: str) -> None:
    """Refuse (one ``ConfigError`` line) to read ``work/output`` when an output it was made from has
    been replaced since (recursively: masks -> captions -> outfits -> plans); see
    :func:`~dlcr.generation.signature_record.check_inputs_current`."""
    work = Path(work)
    made_by = {JOBS: "plan", QUERY_JOBS: "queries --plan-only"}
    made_by.update({p.name: stage for p, stage in _upstream(work).values()})
    check_inputs_current(work / output, _upstream(work), name=output, made_by=made_by.get(output))


def _signature_of(backend: Any) -> dict[str, Any]:
    """A backend's signature: given as a mapping (from :func:`backend_signature`), or of a built object."""
    return dict(backend) if isinstance(backend, Mapping) else object_signature(backend)


def masks_signature(parser: Any) -> dict[str, Any]:
    """The masks stage's signature: the parser's (backend, options with defaults, model fingerprint).

    ``parser`` is a built parser or its signature (``backend_signature(PARSERS, name, options)``,
    which equals ``object_signature`` of the parser built from them, so nothing need be loaded)."""
    return {"stage": "masks", "parser": _signature_of(parser)}


def check_masks(work: str | os.PathLike, parser: Any) -> None:
    """The masks stage's refusal, before a parser is built: label maps in ``work/masks`` of another
    signature are the one-line ``ConfigError`` that :func:`run_masks` gives (nothing is recorded)."""
    from dlcr.generation.parsing import _label_maps

    out = Path(work) / MASKS
    committed = len(_label_maps(out)) if out.is_dir() else 0
    check_signature(signature_file(out), masks_signature(parser), what="label maps", committed=committed,
                    record=False)


def run_masks(parser: Any, samples: Sequence[Sample], root: str | os.PathLike, work: str | os.PathLike,
              *, batch_size: int | None = None, overwrite: bool = False) -> Any:
    """Label maps for ``samples`` (train and, for refinement, query images) into ``work/masks``."""
    from dlcr.generation.parsing import parse_dataset

    paths = [f for s in samples for f in (s.frames or (s.path,))]
    rep = parse_dataset(parser, paths, root, Path(work) / MASKS, batch_size=batch_size,
                        signature=masks_signature(parser), overwrite=overwrite)
    return rep


def describe_signatures(work: str | os.PathLike, captioner: Any, summarizer: Any) -> dict[str, dict[str, Any]]:
    """The signatures of ``captions.parquet`` (captioner + the masks' signature hash) and
    ``outfits.parquet`` (summariser + the captions' signature hash); the captioner and summariser
    are built objects or their signatures (see :func:`masks_signature`)."""
    from dlcr.generation.signature_record import signature_hash

    captions = {"stage": "captions", "captioner": _signature_of(captioner),
                "inputs": {"masks": recorded_hash(Path(work) / MASKS)}}
    outfits = {"stage": "outfits", "summarizer": _signature_of(summarizer),
               "inputs": {"captions": signature_hash(captions)}}
    return {"captions": captions, "outfits": outfits}


def check_describe(work: str | os.PathLike, captioner: Any, summarizer: Any) -> None:
    """The describe stage's refusals, before a captioner or summariser is built: missing label maps,
    and captions / outfits of another signature (the one-line errors :func:`run_describe` gives;
    nothing is recorded)."""
    from dlcr.generation.describe_tables import CAPTIONS_SCHEMA, OUTFITS_SCHEMA, committed_table

    work = Path(work)
    _need(work / MASKS, "label maps", "dlcr generate masks")
    check_current(work, MASKS)
    sigs = describe_signatures(work, captioner, summarizer)
    for name, table, schema, key in (("captions", CAPTIONS, CAPTIONS_SCHEMA, "path"),
                                     ("outfits", OUTFITS, OUTFITS_SCHEMA, "clothes_key")):
        tbl = committed_table(work, table, schema, key)
        check_signature(signature_file(tbl.path), sigs[name], what=name, committed=len(tbl.load()), record=False)


def run_describe(train: Sequence[Sample], root: str | os.PathLike, work: str | os.PathLike, *,
                 captioner: Any, summarizer: Any, batch_size: int = 32, overwrite: bool = False) -> Any:
    from dlcr.generation.describe import describe_dataset

    work = Path(work)
    _need(work / MASKS, "label maps", "dlcr generate masks")
    check_current(work, MASKS)
    return describe_dataset(train, root, work / MASKS, work, captioner=captioner, summarizer=summarizer,
                            batch_size=batch_size, signatures=describe_signatures(work, captioner, summarizer),
                            overwrite=overwrite)


def read_work_outfits(work: str | os.PathLike) -> dict[str, Any]:
    """``work/outfits.parquet``, once its chain (captions, masks) is checked to be current."""
    from dlcr.generation.describe_tables import read_outfits

    path = _need(Path(work) / OUTFITS, "outfits", "dlcr generate describe")
    check_current(work, OUTFITS)
    return read_outfits(path)


def _check_plan(path: Path, sig: dict[str, Any], overwrite: bool) -> str:
    from dlcr.generation.planning import read_jobs

    committed = 0
    if path.is_file():
        try:
            committed = len(read_jobs(path))
        except Exception:  # a damaged plan: there is nothing to keep
            committed = 0
    return check_signature(signature_file(path), sig, what=f"jobs of the plan {path.name}", committed=committed,
                           overwrite=overwrite, remove=lambda: path.unlink(missing_ok=True))


def plan_signature(work: str | os.PathLike, *, k: int, seed: int, allow_same_person: bool, num_partitions: int,
                   dataset: str, generator: str, prompt_source: str = "dataset",
                   targets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The signature of ``jobs.parquet``. ``prompt_source`` is recorded when it is not the default
    ``dataset`` (so plans made before the option existed still resume), and always differs between
    the two sources: a vocabulary plan never resumes into a dataset one, nor the other way round.
    Targets given by the caller (``targets`` of :func:`run_plan`) are recorded as a hash of their prompts."""
    sig: dict[str, Any] = {"stage": "plan", "k": int(k), "seed": int(seed), "allow_same_person": bool(allow_same_person),
                           "num_partitions": int(num_partitions), "dataset": dataset, "generator": generator,
                           "inputs": {"outfits": recorded_hash(Path(work) / OUTFITS)}}
    if prompt_source != "dataset":
        sig["prompt_source"] = str(prompt_source)
    if targets is not None:
        from dlcr.generation.planning import prompt_of
        from dlcr.generation.signature_record import stable_hash

        sig["targets"] = stable_hash(sorted((str(key), prompt_of(o)) for key, o in targets.items()))
    return sig


def run_plan(train: Sequence[Sample], work: str | os.PathLike, *, k: int, seed: int, allow_same_person: bool,
             num_partitions: int, dataset: str, generator: str, prompt_source: str = "dataset",
             targets: Mapping[str, Any] | None = None, overwrite: bool = False) -> list[Any]:
    """Plan K jobs per training image into ``work/jobs.parquet``; targets are the dataset's described
    outfits (``prompt_source="dataset"``, the paper) or random garment-vocabulary prompts
    (``"vocabulary"``, the Table A3 ablation; see :mod:`dlcr.generation.planning`).

    ``targets`` (clothes key -> prompt or :class:`~dlcr.types.Outfit`) replaces the described outfits
    as the ones drawn from (the real-photo panel's fixed outfit list); ``outfits.parquet`` must still
    exist and be current."""
    from dlcr.generation.planning import PROMPT_SOURCES, plan_jobs, write_jobs

    if prompt_source not in PROMPT_SOURCES:
        raise ConfigError(f"unknown generate.prompt_source {prompt_source!r}; known: {', '.join(PROMPT_SOURCES)}")
    work = Path(work)
    outfits = read_work_outfits(work)
    if targets is not None:
        outfits = dict(targets)
    sig = plan_signature(work, k=k, seed=seed, allow_same_person=allow_same_person, num_partitions=num_partitions,
                         dataset=dataset, generator=generator, prompt_source=prompt_source, targets=targets)
    state = _check_plan(work / JOBS, sig, overwrite)
    jobs = PlannedJobs(plan_jobs(train, outfits, k=k, seed=seed, allow_same_person=allow_same_person,
                                 num_partitions=num_partitions, dataset=dataset, generator=generator,
                                 prompt_source=prompt_source))
    jobs.signature = state
    write_jobs(work / JOBS, jobs)
    log.info("planned %d jobs (%d images × K=%d) into %s", len(jobs), len(train), k, work / JOBS)
    return jobs


def run_plan_queries(queries: Sequence[Sample], work: str | os.PathLike, *, l: int, seed: int,  # noqa: E741
                     dataset: str, generator: str, overwrite: bool = False) -> list[Any]:
    from dlcr.generation.planning import plan_query_jobs, write_jobs

    work = Path(work)
    outfits = read_work_outfits(work)
    sig = {"stage": "query_plan", "l": int(l), "seed": int(seed), "dataset": dataset, "generator": generator,
           "inputs": {"outfits": recorded_hash(work / OUTFITS)}}
    state = _check_plan(work / QUERY_JOBS, sig, overwrite)
    jobs = PlannedJobs(plan_query_jobs(queries, outfits, l=l, seed=seed, dataset=dataset, generator=generator))
    jobs.signature = state
    write_jobs(work / QUERY_JOBS, jobs)
    return jobs


def run_inpaint(work: str | os.PathLike, root: str | os.PathLike, *, backend: str,
                backend_options: Mapping[str, Any], batch_size: int = 8, driver: str = "local",
                queries: bool = False, ray_concurrency: int = 1, mask_region: str = "clothes",
                overwrite: bool = False) -> Any:
    """Generate the pending jobs of ``jobs.parquet`` (or ``query_jobs.parquet``); the generation
    signature is checked before any model is loaded (``overwrite`` replaces other outputs).

    ``mask_region`` is what may be repainted (:func:`~dlcr.generation.worker.region_mask`):
    ``clothes`` (the paper's ID-preserving mask) or ``person`` (every non-background label, identity
    cues included: the "standard diffusion" ablation). It is part of the generation signature.

    Refused first (one ``ConfigError`` line): a plan made for another backend (its jobs' ``generator``,
    which their ids are hashed with) and a plan whose upstream outputs (outfits, captions, masks)
    were replaced since it was made."""
    from dlcr.generation.inpainters import INPAINTERS, create_inpainter
    from dlcr.generation.planning import read_jobs
    from dlcr.generation.runner import inpaint_signature, run_jobs
    from dlcr.generation.worker import check_mask_region

    check_mask_region(mask_region)
    work = Path(work)
    jobs_file = work / (QUERY_JOBS if queries else JOBS)
    hint = "dlcr generate queries --plan-only" if queries else "dlcr generate plan"
    jobs = read_jobs(_need(jobs_file, "the job plan", hint))
    INPAINTERS.get(backend)  # unknown names fail before any work
    planned_for = sorted({str(j.generator).lower() for j in jobs})
    if planned_for and planned_for != [str(backend).lower()]:
        replan = ("dlcr generate queries --plan-only" if queries else "dlcr generate plan")
        raise ConfigError(f"{jobs_file.name} was planned for backend {', '.join(map(repr, planned_for))}, not "
                          f"{backend!r}; re-run `{replan} --set generate.backend={backend} --overwrite`")
    check_current(work, jobs_file.name)
    make = functools.partial(create_inpainter, backend, **dict(backend_options))
    label_root = _need(work / MASKS, "label maps", "dlcr generate masks")
    sig = inpaint_signature(backend, dict(backend_options), jobs, label_root, mask_region=mask_region)
    return run_jobs(jobs, make_worker=make, image_root=root, label_root=label_root,
                    out_dir=work / (QUERY_GENERATED if queries else GENERATED), batch_size=batch_size,
                    driver=driver, ray_concurrency=ray_concurrency, signature=sig, overwrite=overwrite,
                    mask_region=mask_region)
