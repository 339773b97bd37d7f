"""Stage 1 on the shipped photographs (pose masks -> rule captions -> recolor variants) and its report section."""

import json

import numpy as np
import pytest

from dlcr.demo import realphoto as photos
from dlcr.demo.realphoto import MANIFEST, REALPHOTO_DIRNAME, run_real_photo_stage
from dlcr.io.atomic import atomic_write_json
from dlcr.io.images import read_label_map, read_rgb
from dlcr.lip import CLOTHES_LABELS, labels_mask

REASON = photos.real_photo_missing()


def test_photo_files_are_located_without_download():
    path = photos.photo_path("grace_hopper")  # matplotlib is a core dependency
    assert path is not None and path.name == "grace_hopper.jpg"
    img = photos.load_photo("grace_hopper")
    assert img.shape == (600, 512, 3) and img.dtype == np.uint8


def test_person_box_and_crop_by_hand():
    mask = np.zeros((100, 80), bool)
    mask[20:70, 30:50] = True  # 50 x 20
    assert photos.person_box(mask, margin=0.1) == (15, 75, 28, 52)
    assert photos.person_box(mask, margin=1.0) == (0, 100, 10, 70)  # clamped to the image
    assert photos.person_box(np.zeros((4, 4), bool)) is None
    crop = photos.crop_resize(np.zeros((100, 80, 3), np.uint8), (15, 75, 28, 52), height=120)
    assert crop.shape == (120, 48, 3)  # 60 x 24 scaled by 2


def test_stage_is_skipped_with_a_reason_when_the_pose_extra_is_missing(tmp_path, monkeypatch):
    from dlcr.generation.parsers import pose

    monkeypatch.setattr(pose, "mediapipe_missing", lambda: "mediapipe is not installed (pip ...)")
    m = run_real_photo_stage(tmp_path / "rp")
    assert m["status"] == "skipped" and "mediapipe is not installed" in m["reason"]
    assert json.loads((tmp_path / "rp" / MANIFEST).read_text()) == m


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    if REASON:
        pytest.skip(f"real-photo stage unavailable: {REASON}")
    import torch

    torch.set_num_threads(1)
    demo = tmp_path_factory.mktemp("demo")
    out = demo / REALPHOTO_DIRNAME
    return demo, out, run_real_photo_stage(out, k=3, height=192, seed=5)


def test_real_photos_end_to_end(stage):
    _, out, m = stage
    assert m["status"] == "ok" and m["k"] == 3 and m["fallbacks"] == 0
    assert [r["name"] for r in m["photos"]] == photos.available_photos()
    assert json.loads((out / MANIFEST).read_text()) == m
    for r in m["photos"]:
        crop = read_rgb(out / r["original"])
        lab = read_label_map(out / r["mask"])
        assert crop.shape[0] == 192 and lab.shape == crop.shape[:2] and r["pose_found"]
        clothes = labels_mask(lab, CLOTHES_LABELS)
        assert clothes.sum() == r["clothes_pixels"] > 0.15 * clothes.size
        assert "shirt" in r["caption"] and r["outfit"]["upper"]  # both wear an upper garment
        prompts = [v["prompt"] for v in r["variants"]]
        assert len(prompts) == len(set(prompts)) == 3 and set(prompts) <= set(photos.OUTFITS)
        for v in r["variants"]:
            img = read_rgb(out / v["file"])
            assert np.array_equal(img[~clothes], crop[~clothes])  # only the clothes change
            assert np.abs(img[clothes].astype(int) - crop[clothes]).mean() > 10


def test_stage_is_deterministic(stage, tmp_path):
    _, out, m = stage
    again = run_real_photo_stage(tmp_path / "again", k=3, height=192, seed=5)
    assert [r["variants"] for r in again["photos"]] == [r["variants"] for r in m["photos"]]
    for r in m["photos"]:
        for v in r["variants"]:
            assert (tmp_path / "again" / v["file"]).read_bytes() == (out / v["file"]).read_bytes()


def test_the_panel_goes_through_the_generation_stages(stage):
    """The photos are a tiny dataset whose work folder holds every stage's outputs and signatures."""
    from dlcr.data.datasets import dataset_from_samples
    from dlcr.errors import ConfigError
    from dlcr.generation import stages
    from dlcr.generation.outputs import read_manifest
    from dlcr.generation.planning import read_jobs

    _, out, m = stage
    work = out / photos.WORK_DIRNAME
    ds = dataset_from_samples(work / "samples.parquet", out)
    assert ds.name == "realphoto" and [s.path for s in ds.train] == [r["original"] for r in m["photos"]]
    for made in ("masks/signature.json", "captions.signature.json", "outfits.signature.json",
                 "jobs.signature.json", "generated/signature.json"):
        assert (work / made).is_file(), made
    jobs = read_jobs(work / stages.JOBS)
    shown = sorted((r["original"], v["prompt"], v["seed"]) for r in m["photos"] for v in r["variants"])
    assert sorted((j.source, j.prompt, j.seed) for j in jobs) == shown
    assert {r.backend for r in read_manifest(work / stages.GENERATED)} == {"recolor"}
    # the plan's signature holds the target list: other targets do not resume into these jobs
    with pytest.raises(ConfigError, match="jobs.parquet"):
        stages.run_plan(ds.train, work, k=3, seed=5, allow_same_person=False, num_partitions=1, dataset="realphoto",
                        generator="recolor", targets={"outfit0": photos.OUTFITS[1]})


def test_report_shows_the_real_photo_panel(stage):
    from dlcr.report import build_demo_report

    demo, _, m = stage
    page = build_demo_report(demo).read_text()
    section = page.split('<section id="realphoto">')[1].split("</section>")[0]
    n_photos = len(m["photos"])
    assert section.count('<div class="genrow photorow">') == n_photos
    assert section.count("<img ") == n_photos * (2 + 3)  # crop, mask, 3 variants
    assert "Grace Hopper" in section and "pose mask" in section


def test_report_notes_a_skipped_stage(tmp_path):
    from dlcr.report import build_demo_report

    atomic_write_json(tmp_path / REALPHOTO_DIRNAME / MANIFEST,
                      {"version": 1, "status": "skipped", "reason": "mediapipe is not installed", "photos": []})
    page = build_demo_report(tmp_path).read_text()
    section = page.split('<section id="realphoto">')[1].split("</section>")[0]
    assert "skipped: mediapipe is not installed" in section and "<img" not in section
    (tmp_path / REALPHOTO_DIRNAME / MANIFEST).unlink()
    page = build_demo_report(tmp_path).read_text()
    assert "the real-photo stage did not run" in page.split('<section id="realphoto">')[1]
