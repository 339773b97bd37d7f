"""``dlcr generate import-released``: the DLCR authors' released generated data into ``<work>/generated/``.

From a local folder (``--from``) or from a Hugging Face hub dataset (``--hub ID --benchmark NAME``),
see :mod:`dlcr.generation.released_hub`. The strips are matched to the configured dataset's training
images, so ``dlcr train`` then uses them like locally generated variants.
"""

from __future__ import annotations

import typer

from dlcr.cli.common import ConfigOpt, SetOpt, WorkOpt, flag, get_config, open_dataset, work_dir
from dlcr.errors import ConfigError


def import_released_cmd(
    config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
    src: str = typer.Option(None, "--from", help="local folder in the released layout (strips + txt files)",
                            show_default="none: give --from or --hub"),
    hub: str = typer.Option(None, "--hub", help="Hugging Face hub dataset id; the DLCR authors' release is "
                                                "ihaveamoose/DLCR", show_default="none"),
    benchmark: str = typer.Option(None, "--benchmark",
                                  help="with --hub: the dataset's top-level folder to fetch, e.g. PRCC",
                                  show_default="none"),
    revision: str = typer.Option(None, "--revision", help="with --hub: branch, tag or commit",
                                 show_default="main"),
    offline: bool = flag(False, "--offline", help="with --hub: only the local hub cache (like HF_HUB_OFFLINE=1)"),
    overwrite: bool = flag(False, "--overwrite",
                           help="replace generated images in --work that came from elsewhere"),
) -> None:
    """Import released DLCR data (one strip of variants + one txt per image) as generated images."""
    from dlcr.generation import released_hub as rh
    from dlcr.generation.layout import GENERATED

    if (src is None) == (hub is None):
        raise ConfigError("give one source: --from FOLDER or --hub DATASET_ID --benchmark NAME")
    if hub is None and (benchmark is not None or revision is not None or offline):
        raise ConfigError("--benchmark, --revision and --offline go with --hub, not with --from")
    if hub is not None and not benchmark:
        raise ConfigError(f"--hub needs --benchmark NAME (a top-level folder of {hub})")
    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    w = work_dir(cfg, work)
    parts = cfg.sampler.num_partitions
    if hub is not None:
        name = rh.check_benchmark(benchmark)
        # refuse a work folder holding other generated images before downloading anything
        rh.check_work(w, rh.import_signature(rh.hub_origin(hub, name, revision), ds.name, parts), overwrite=overwrite)
        source = rh.fetch_benchmark(hub, name, revision=revision, local_files_only=offline)
    else:
        source = rh.local_source(src)
    records = rh.import_into_work(source, w, list(ds.train), dataset=ds.name, num_partitions=parts,
                                  overwrite=overwrite)
    images = len({r.source for r in records})
    typer.echo(f"import-released: {len(records)} variants of {images} training images from {source.folder} "
               f"-> {w / GENERATED}")
