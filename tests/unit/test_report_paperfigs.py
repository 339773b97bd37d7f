"""The paper's Fig. A5-A7 in the demo report's "Feature space" section: drawn from a fake demo folder
with tiny checkpoints, the helpers by hand, and the notes when the extra or the inputs are missing."""

from __future__ import annotations

import html as h
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlcr.errors import CheckpointError, InputError
from dlcr.report import build_demo_report
from dlcr.report import plots as plots_mod
from dlcr.report.figures import mass_share, nearest_same_identity, tsne_2d, tsne_perplexity
from dlcr.report.html import demo_report
from dlcr.report.paperfigs import N_CAM_SHOWN, _per_identity, report_extra_missing
from dlcr.report.reidmodel import RunModel, grad_cam, load_run_model
from fake_demo import FAKE_INPUT, _is_png, add_fake_checkpoints, make_fake_demo, section

FIGS = ("figures/tsne.png", "figures/activation_maps.png", "figures/tsne_real_generated.png")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A fake demo with checkpoints, its report, and the panel boxes of the activation-map grid."""
    root = make_fake_demo(tmp_path_factory.mktemp("demo"))
    add_fake_checkpoints(root)
    real = plots_mod.plot_activation_grid
    calls = []

    def recording(*a, **kw):
        calls.append(real(*a, **kw))
        return calls[-1]

    mp = pytest.MonkeyPatch()
    mp.setattr(plots_mod, "plot_activation_grid", recording)
    try:
        page = build_demo_report(root).read_text(encoding="utf-8")
    finally:
        mp.undo()
    return root, page, calls


def _figures(text: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', text)


def test_every_figure_is_drawn_next_to_the_pca(drawn):
    root, page, _ = drawn
    feats = section(page, "features")
    assert 'class="note"' not in feats
    heads = re.findall(r"<h3>(.*?)</h3>", feats)
    assert len(heads) == 4 and heads[0].startswith("PCA")
    assert [s for s in ("A5", "A6", "A7") if any(s in x for x in heads)] == ["A5", "A6", "A7"]
    assert _figures(feats) == ["figures/pca.png", *FIGS]
    for f in FIGS:
        assert _is_png(root / f)
    with Image.open(root / FIGS[0]) as im:
        assert im.size[0] > 1.8 * im.size[1]  # baseline and DLCR side by side
    with Image.open(root / FIGS[2]) as im:
        assert im.size[0] > im.size[1]  # one panel and its legend


def test_tsne_text_counts_the_points_of_six_identities(drawn):
    _, page, _ = drawn
    text = h.unescape(section(page, "features").split("Fig. A5)</h3>", 1)[1].split("<h3>", 1)[0])
    # 6 identities x (2 queries + 6 gallery images) in the fake demo; perplexity a third of the others
    assert "6 test identities (48 images)" in text and f"perplexity {tsne_perplexity(48):.3g}," in text
    ratios = [float(x) for x in re.findall(r"(?:baseline|DLCR progressive) (\d\.\d\d)", text)]
    assert len(ratios) == 2 and ratios[1] < ratios[0]  # the fake DLCR features are the identity-driven ones


def test_activation_grid_has_a_row_per_image_and_models_differ(drawn):
    root, page, calls = drawn
    assert len(calls) == 1
    boxes = calls[0]
    assert len(boxes) == N_CAM_SHOWN and all(len(row) == 3 for row in boxes)  # image / baseline / DLCR
    with Image.open(root / FIGS[1]) as im:
        png = np.asarray(im.convert("RGB")).astype(int)
        assert im.size[1] > im.size[0]  # four rows, three columns
    for row in boxes:
        hh, ww = min(b - t for _, t, _, b in row) - 4, min(r - left for left, _, r, _ in row) - 4
        assert hh > 100 and ww > 50  # panels of the boxes' size, inside the PNG
        assert all(left >= 0 and r <= png.shape[1] and t >= 0 and b <= png.shape[0] for left, t, r, b in row)
        crops = [png[t + 2:t + 2 + hh, left + 2:left + 2 + ww] for left, t, _, _ in row]
        img, base, dlcr = crops
        assert np.abs(base - img).mean() > 10 and np.abs(dlcr - img).mean() > 10  # heat drawn over the image
        assert np.abs(base - dlcr).mean() > 5  # the two models look at different places
    text = h.unescape(section(page, "features").split("Fig. A6)</h3>", 1)[1].split("<h3>", 1)[0])
    assert f"on {N_CAM_SHOWN} clothes-changing queries" in text
    shares = re.findall(r"(baseline|DLCR progressive) (\d+)%", text)
    assert [n for n, _ in shares] == ["baseline", "DLCR progressive"]
    assert all(0 <= int(v) <= 100 for _, v in shares)


def test_real_and_generated_counts(drawn):
    _, page, _ = drawn
    text = h.unescape(section(page, "features").split("Fig. A7)</h3>", 1)[1])
    # 3 identities x 4 real training images, 3 variants each (k=3) in the fake demo
    assert "12 real training images of 3 identities" in text and "36 of their generated" in text
    assert re.search(r"of the same person: \d+%", text)


# --------------------------------------------------------------------------------------------
# Missing extra or inputs: notes, and the rest of the section still drawn
# --------------------------------------------------------------------------------------------


def test_without_the_report_extra_each_figure_is_a_note(tmp_path, monkeypatch):
    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    add_fake_checkpoints(root, seeds=(0,))
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # `import sklearn.manifold` now fails
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    assert report_extra_missing("sklearn").startswith("scikit-learn cannot be imported")
    rep = build_demo_report(root)
    feats = h.unescape(section(rep.read_text(), "features"))
    notes = re.findall(r'<p class="note">(.*?)</p>', feats)
    assert len(notes) == 3
    assert notes[0].startswith("not drawn: scikit-learn cannot be imported") and "pip install -e '.[report]'" in notes[0]
    assert notes[1].startswith("not drawn: captum cannot be imported") and "`report` extra" in notes[1]
    assert notes[2].startswith("not drawn: scikit-learn cannot be imported")
    assert _figures(feats) == ["figures/pca.png"]


def test_missing_checkpoints_and_generated_images_are_named(tmp_path):
    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    shutil.rmtree(root / "work" / "generated")
    feats = h.unescape(section(build_demo_report(root).read_text(), "features"))
    notes = re.findall(r'<p class="note">(.*?)</p>', feats)
    runs = root.resolve() / "runs"
    assert notes == [f"not drawn: no {runs / 'baseline_s0' / 'checkpoints'} (the trained model is needed to "
                     "compute this figure)",
                     f"not drawn: no {root.resolve() / 'work' / 'generated' / 'manifest.parquet'} (no generated "
                     "training images)"]
    assert _figures(feats) == ["figures/pca.png", "figures/tsne.png"]


def test_nothing_to_draw_skips_the_section_with_every_reason(tmp_path):
    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    shutil.rmtree(root / "runs")
    rep = demo_report(root.resolve())
    assert rep.path.is_file() and "features" not in rep.built
    reason = dict(rep.skipped)["features"]
    for title in ("PCA", "Fig. A5", "Fig. A6", "Fig. A7"):
        assert title in reason
    assert reason.count("needs ") == 4


# --------------------------------------------------------------------------------------------
# The pieces by hand
# --------------------------------------------------------------------------------------------


def _tiny(seed: int = 0) -> RunModel:
    from dlcr.models import create_model

    torch.manual_seed(seed)
    m = create_model("small_resnet", 3, widths=(8, 8, 16, 16)).eval()
    return RunModel(model=m, height=FAKE_INPUT["height"], width=FAKE_INPUT["width"], interpolation="bilinear",
                    checkpoint=Path("-"))


def test_grad_cam_is_the_gradient_weighted_last_stage():
    rm = _tiny()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 16, 3), dtype=np.uint8) for _ in range(3)]
    targets = rng.normal(size=(3, rm.model.feat_dim))
    maps, scores = grad_cam(rm, images, targets)

    from dlcr.report.reidmodel import image_batch

    x = image_batch(rm, images)
    acts = {}
    hook = rm.model.backbone.layer4.register_forward_hook(lambda _m, _i, out: acts.setdefault("a", out))
    t = torch.nn.functional.normalize(torch.tensor(targets, dtype=torch.float32), dim=1)
    s = (torch.nn.functional.normalize(rm.model(x), dim=1) * t).sum(1)
    hook.remove()
    (grads,) = torch.autograd.grad(s.sum(), acts["a"])
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1)).detach().numpy()
    assert maps.shape == cam.shape == (3, 4, 2)
    for m, c in zip(maps, cam, strict=True):
        expect = c / c.max() if c.max() > 0 else c
        np.testing.assert_allclose(m, expect, atol=1e-5)
    np.testing.assert_allclose(scores, s.detach().numpy(), atol=1e-5)


def test_load_run_model_needs_the_recorded_input_size(tmp_path):
    from dlcr.engine.checkpoint import save_checkpoint

    rm = _tiny(3)
    ck = tmp_path / "run" / "checkpoints"
    save_checkpoint(ck, model=rm.model, epoch=0, name="last",
                    config={"model": {"name": "small_resnet", "widths": [8, 8, 16, 16]}, "data": dict(FAKE_INPUT)})
    loaded = load_run_model(tmp_path / "run")
    assert (loaded.height, loaded.width, loaded.checkpoint.name) == (64, 32, "last.json")
    for a, b in zip(loaded.model.state_dict().values(), rm.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    save_checkpoint(ck, model=rm.model, epoch=0, name="last", config={"model": {"widths": [8, 8, 16, 16]}})
    with pytest.raises(CheckpointError, match="does not record the input size"):
        load_run_model(tmp_path / "run")


def test_tsne_is_seeded_and_keeps_separated_clusters_apart():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 12.0])
    a, b = tsne_2d(x, seed=0), tsne_2d(x, seed=0)
    np.testing.assert_array_equal(a, b)
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert np.all((nearest < 20) == (np.arange(40) < 20))
    assert tsne_perplexity(5) < 5 and tsne_perplexity(1000) == 30.0
    with pytest.raises(InputError, match="at least four"):
        tsne_2d(x[:3])


def test_nearest_same_identity_and_mass_share_by_hand():
    refs = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    assert nearest_same_identity(q, np.array([1, 2, 2]), refs, np.array([1, 2])) == pytest.approx(2 / 3)
    cam = np.array([[1.0, 3.0], [0.0, 4.0]])
    region = np.array([[True, False], [False, True]])
    person = np.array([[True, True], [False, True]])
    assert mass_share(cam, region, person) == pytest.approx(5 / 8)
    assert mass_share(np.zeros((2, 2)), region, person) is None


def test_per_identity_cap_spreads_over_each_identity():
    pids = np.array([1] * 10 + [2] * 3)
    keep = _per_identity(pids, 4)
    assert keep.tolist() == [0, 3, 6, 9, 10, 11, 12]


def test_paper_figures_are_reused_until_an_input_changes(tmp_path, monkeypatch):
    """A second build with the same inputs does not draw again; touching a run's features does."""
    from dlcr.report import figcache

    figures = tmp_path / "figures"
    figures.mkdir()
    (tmp_path / "results.json").write_text("{}")
    calls = []

    def draw():
        calls.append(1)
        (figures / "x.png").write_bytes(b"png")
        return f"<p>drawn {len(calls)}</p>"

    sig = figcache.signature(tmp_path)
    assert figcache.cached(figures, "x", "x.png", sig, draw) == "<p>drawn 1</p>"
    assert figcache.cached(figures, "x", "x.png", figcache.signature(tmp_path), draw) == "<p>drawn 1</p>"
    assert len(calls) == 1
    feats = tmp_path / "runs" / "baseline_s0" / "eval" / "features.npz"
    feats.parent.mkdir(parents=True)
    feats.write_bytes(b"new")
    assert figcache.cached(figures, "x", "x.png", figcache.signature(tmp_path), draw) == "<p>drawn 2</p>"
    (figures / "x.png").unlink()  # a missing figure is drawn again whatever the record says
    assert figcache.cached(figures, "x", "x.png", figcache.signature(tmp_path), draw) == "<p>drawn 3</p>"
