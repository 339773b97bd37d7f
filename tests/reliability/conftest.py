"""Shared fixtures of the reliability suite: one tiny synthcc world and a prepared work folder.

Tests that damage inputs work on copies (``relia_util.clone``), so the session fixtures stay pristine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from relia_util import H, W


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered synthcc world (6 identities, 64x32): the folder that contains ``synthcc/``."""
    from dlcr.synth import render_world

    root = tmp_path_factory.mktemp("rel_world") / "w"
    render_world(root, ids=6, seed=5, height=H, width=W)
    return root


@pytest.fixture(scope="session")
def work(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work folder with masks, descriptions, a K=2 plan and recolor-generated training variants."""
    from dlcr.data.datasets import create_dataset
    from dlcr.generation import stages
    from dlcr.generation.describers import create_captioner, create_summarizer
    from dlcr.generation.parsers import create_parser

    ds = create_dataset("synthcc", world)
    w = tmp_path_factory.mktemp("rel_work") / "work"
    stages.run_masks(create_parser("synthcc"), list(ds.train), ds.root, w)
    stages.run_describe(ds.train, ds.root, w, captioner=create_captioner("rule"),
                        summarizer=create_summarizer("vote"))
    stages.run_plan(ds.train, w, k=2, seed=0, allow_same_person=False, num_partitions=2, dataset="synthcc",
                    generator="recolor")
    stages.run_inpaint(w, ds.root, backend="recolor", backend_options={}, batch_size=64)
    return w
