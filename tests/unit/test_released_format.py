import functools
import os
from pathlib import Path

import numpy as np
import pytest

from dlcr.errors import ImageError, UnsafePathError
from dlcr.generation.inpainters import create_inpainter
from dlcr.generation.outputs import GeneratedRecord, read_manifest
from dlcr.generation.planning import plan_jobs
from dlcr.generation.released_format import (
    describe_line,
    export_released,
    import_released,
    parse_line,
    parts_from_prompt,
)
from dlcr.generation.runner import run_jobs
from dlcr.io.images import read_rgb, write_png
from dlcr.testing.toy_generation import make_toy_dataset


@pytest.fixture
def generated(tmp_path: Path):
    samples, outfits, image_root, label_root = make_toy_dataset(
        tmp_path / "ds", n_persons=3, height=24, width=12
    )
    jobs = plan_jobs(samples, outfits, k=3, seed=0, dataset="toy")
    run_jobs(
        jobs,
        make_worker=functools.partial(create_inpainter, "recolor"),
        image_root=image_root,
        label_root=label_root,
        out_dir=tmp_path / "gen",
        batch_size=4,
    )
    return samples, outfits, tmp_path / "gen"


def test_line_format_roundtrip():
    line = describe_line("red t-shirt", "blue | jeans", "white\nsneakers")
    assert line == "red t-shirt| blue / jeans| white sneakers"
    assert parse_line(line + "\n") == ("red t-shirt", "blue / jeans", "white sneakers")
    assert parse_line("only upper") == ("only upper", "", "")
    assert parts_from_prompt("a person wearing red shirt, blue jeans, white shoes") == (
        "red shirt",
        "blue jeans",
        "white shoes",
    )
    assert parts_from_prompt("a person") == ("", "", "")


def test_export_writes_strips_and_descriptions_in_dataset_folders(generated, tmp_path):
    samples, outfits, gen = generated
    written = export_released(gen, tmp_path / "rel", outfits=outfits)
    assert len(written) == len(samples)
    recs = read_manifest(gen)
    for s in samples:
        stem = s.path[: -len(".png")]
        strip = read_rgb(tmp_path / "rel" / (stem + ".png"))
        assert strip.shape == (24, 36, 3)  # three tiles of the source size side by side
        mine = sorted((r for r in recs if r.source == s.path), key=lambda r: r.variant)
        for v, r in enumerate(mine):
            assert np.array_equal(strip[:, v * 12 : (v + 1) * 12], read_rgb(gen / r.file))
        lines = (tmp_path / "rel" / (stem + ".txt")).read_text().splitlines()
        o = [outfits[r.target_clothes_key] for r in mine]
        assert lines == [f"{x.upper}| {x.lower}| {x.footwear}" for x in o]


def test_import_reads_released_data_back(generated, tmp_path):
    samples, outfits, gen = generated
    export_released(gen, tmp_path / "rel", outfits=outfits)
    recs = import_released(tmp_path / "rel", tmp_path / "imported", dataset="toy", samples=samples)
    assert len(recs) == 3 * len(samples)
    assert read_manifest(tmp_path / "imported") == sorted(
        recs, key=lambda r: (r.kind, r.source, r.variant, r.job_id)
    )
    orig = {(r.source, r.variant): r for r in read_manifest(gen)}
    by_path = {s.path: s for s in samples}
    for r in recs:
        o = orig[(r.source, r.variant)]
        assert np.array_equal(read_rgb(tmp_path / "imported" / r.file), read_rgb(gen / o.file))
        assert r.pid == by_path[r.source].pid and r.backend == "released"
        assert r.prompt == outfits[o.target_clothes_key].prompt
        assert r.partition == o.partition
    assert sorted({r.partition for r in recs}) == [1, 2, 3]  # k=3 over 4 partitions: the first is empty
    # without samples the strip path stands for the source
    recs2 = import_released(tmp_path / "rel", tmp_path / "imported2")
    assert all(r.pid == -1 and r.source.endswith(".png") for r in recs2) and len(recs2) == len(recs)


def test_import_rejects_bad_strips_and_paths_leaving_the_root(tmp_path):
    root = tmp_path / "rel"
    write_png(root / "a" / "x.png", np.zeros((8, 10, 3), np.uint8))
    (root / "a" / "x.txt").write_text("a| b| c\nd| e| f\nh| i| j\n")
    with pytest.raises(ImageError, match="not a multiple"):
        import_released(root, tmp_path / "out")
    (root / "a" / "x.txt").write_text("a| b| c\nd| e| f\n")
    assert len(import_released(root, tmp_path / "out")) == 2
    outside = tmp_path / "outside"
    write_png(outside / "y.png", np.zeros((8, 10, 3), np.uint8))
    (outside / "y.txt").write_text("a| b| c\n")
    os.symlink(outside / "y.png", root / "a" / "y.png")
    os.symlink(outside / "y.txt", root / "a" / "y.txt")
    with pytest.raises(UnsafePathError):
        import_released(root, tmp_path / "out2")
    os.unlink(root / "a" / "y.png")
    os.unlink(root / "a" / "y.txt")
    os.symlink(outside, root / "linked")
    with pytest.raises(UnsafePathError):
        import_released(root, tmp_path / "out3")


def test_export_rejects_sources_leaving_the_root(generated, tmp_path):
    _, _, gen = generated
    rec = read_manifest(gen)[0]
    bad = [GeneratedRecord(**{**rec.to_dict(), "source": "../../evil.png"})]
    with pytest.raises(UnsafePathError):
        export_released(gen, tmp_path / "rel", records=bad)
    bad = [GeneratedRecord(**{**rec.to_dict(), "source": "/etc/evil.png"})]
    with pytest.raises(UnsafePathError):
        export_released(gen, tmp_path / "rel", records=bad)
    bad = [GeneratedRecord(**{**rec.to_dict(), "file": "../../../etc/passwd"})]
    with pytest.raises(UnsafePathError):
        export_released(gen, tmp_path / "rel", records=bad)
    assert not (tmp_path / "evil.png").exists()
