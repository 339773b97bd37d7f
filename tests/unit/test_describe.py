"""Description stage: rule captioner, phrase splitting, voting, describe_dataset (offline, numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from dlcr.errors import ConfigError, InputError
from dlcr.generation.describe import VoteSummarizer, describe_dataset
from dlcr.generation.describe_tables import CAPTIONS_TABLE, OUTFITS_TABLE, read_captions, read_outfits
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.describers.rule import BASIC_COLOURS, RuleCaptioner, colour_name
from dlcr.generation.inpainters.recolor import COLOURS, pattern_mask
from dlcr.generation.outfit_text import split_outfit_text, vote_parts
from dlcr.generation.parsing import MASKS_SCHEMA, MASKS_TABLE
from dlcr.io.images import read_label_map, write_png
from dlcr.io.tables import read_table, write_table
from dlcr.registry import UnknownNameError
from dlcr.testing.toy_generation import make_toy_dataset
from dlcr.types import Outfit, Sample
from dlcr.vocabulary import rgb_to_lab

SKIN = (224, 172, 140)
RED, WHITE, BLUE = (190, 32, 38), (236, 236, 232), (36, 76, 188)


def _person(
    h: int = 96, w: int = 48, *, upper: int = 5, lower: int = 9, sleeves: str = "short", legs: bool = False
):
    """A hand-made LIP label map: face, torso garment, arms, lower garment, shoes."""
    lab = np.zeros((h, w), np.uint8)
    lab[4:16, 18:30] = 13  # face
    lab[18:50, 12:36] = upper
    if sleeves == "short":  # forearm skin from a third of the torso down
        lab[28:52, 6:12] = 14
        lab[28:52, 36:42] = 15
    else:  # long sleeves: only the hands show, below the torso
        lab[18:46, 6:12] = upper
        lab[18:46, 36:42] = upper
        lab[46:52, 6:12] = 14
        lab[46:52, 36:42] = 15
    if lower is not None:
        lab[50:84, 12:36] = lower
    if legs:  # bare legs below short trousers
        lab[62:84, 12:36] = 0
        lab[62:84, 14:22] = 16
        lab[62:84, 26:34] = 17
    lab[84:92, 12:22] = 18
    lab[84:92, 26:36] = 19
    return lab


def _paint(lab: np.ndarray, colours: dict[int, tuple[int, int, int]], seed: int = 0, noise: float = 5.0):
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 160, (*lab.shape, 3)).astype(np.float64)  # grey-ish clutter background
    for k, rgb in colours.items():
        img[lab == k] = rgb
    for k in (13, 14, 15, 16, 17):
        img[lab == k] = SKIN
    shade = np.linspace(1.1, 0.85, lab.shape[0])[:, None, None]  # light from above
    fg = lab > 0
    img[fg] = (img * shade)[fg] + rng.normal(0, noise, (int(fg.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _striped_red_white(lab: np.ndarray, seed: int = 0) -> np.ndarray:
    img = _paint(lab, {5: RED, 9: BLUE, 18: WHITE, 19: WHITE}, seed)
    bands = (np.arange(lab.shape[0]) // 3) % 2 == 1  # 3-pixel horizontal bands
    white = (lab == 5) & bands[:, None]
    img[white] = WHITE
    return img


# --------------------------------------------------------------------------------------------
# rule captioner
# --------------------------------------------------------------------------------------------


def test_rule_caption_red_striped_tshirt_blue_pants_white_shoes():
    lab = _person()
    img = _striped_red_white(lab)
    cap = RuleCaptioner()([img], [lab])[0]
    assert cap == "a person wearing a red and white striped t-shirt, blue pants and white shoes"
    parts = {p.part: p for p in RuleCaptioner().describe(img, lab)}
    assert (parts["upper"].colour, parts["upper"].secondary, parts["upper"].pattern) == (
        "red",
        "white",
        "striped",
    )
    assert (parts["lower"].colour, parts["lower"].pattern) == ("blue", "plain")
    assert (parts["footwear"].colour, parts["footwear"].garment) == ("white", "shoes")


@pytest.mark.parametrize(
    ("pattern", "word"), [("checks", "checked"), ("dots", "dotted"), ("stripes", "striped")]
)
def test_rule_patterns_drawn_by_recolor_are_recognised(pattern, word):
    lab = _person()
    if pattern == "dots":  # the same person at twice the size, so that the dots are a few pixels wide
        lab = np.kron(lab, np.ones((2, 2), np.uint8))
    img = _paint(lab, {5: BLUE, 9: (30, 30, 30), 18: (20, 20, 20), 19: (20, 20, 20)})
    pm = pattern_mask(pattern, lab.shape, np.random.default_rng(3)) & (lab == 5)
    img[pm] = WHITE
    up = RuleCaptioner().describe(img, lab)[0]
    assert (up.colour, up.pattern) == ("blue", word)
    assert up.secondary == "white"


def test_rule_noise_is_not_a_pattern():
    lab = _person()
    img = _paint(lab, {5: (128, 128, 128), 9: BLUE, 18: WHITE, 19: WHITE}, noise=0)
    rng = np.random.default_rng(0)
    salt = (lab == 5) & (rng.random(lab.shape) < 0.4)  # 40% independent white pixels: noise, not dots
    img[salt] = WHITE
    up = RuleCaptioner().describe(img, lab)[0]
    assert up.pattern == "plain"


def test_rule_garment_types_from_labels():
    cap = RuleCaptioner()
    colours = {5: RED, 6: RED, 7: RED, 9: BLUE, 12: BLUE, 18: WHITE, 19: WHITE, 8: WHITE}
    long = _person(sleeves="long")
    assert [p.garment for p in cap.describe(_paint(long, colours), long)] == ["shirt", "pants", "shoes"]
    coat = _person(upper=7)
    assert cap.describe(_paint(coat, colours), coat)[0].garment == "jacket"
    skirt = _person(lower=12)
    assert cap.describe(_paint(skirt, colours), skirt)[1].garment == "skirt"
    shorts = _person(legs=True)
    assert cap.describe(_paint(shorts, colours), shorts)[1].garment == "shorts"
    dress = _person(upper=6, lower=6)  # a dress covers torso and legs: no separate lower garment
    parts = cap.describe(_paint(dress, colours), dress)
    assert [(p.part, p.garment) for p in parts] == [("upper", "dress"), ("footwear", "shoes")]
    socks = _person()
    socks[socks >= 18] = 8
    assert cap.describe(_paint(socks, colours), socks)[-1].garment == "socks"
    bare = np.zeros((40, 20), np.uint8)
    assert cap([np.zeros((40, 20, 3), np.uint8)], [bare]) == ["a person"]


def test_colour_names_are_recolor_vocabulary_and_survive_shading():
    assert set(BASIC_COLOURS) <= set(COLOURS)
    for name in ("black", "white", "gray", "red", "pink", "orange", "yellow", "green", "blue", "navy", "purple",
                 "brown", "beige"):  # fmt: skip
        for s in (0.85, 1.0, 1.1):
            rgb = np.clip(np.rint(np.asarray(COLOURS[name]) * s), 0, 255).astype(np.uint8)
            assert colour_name(rgb_to_lab(rgb)) == name, (name, s)
    assert colour_name(rgb_to_lab(np.array([135, 206, 235], np.uint8))) == "light blue"  # sky blue
    assert colour_name(rgb_to_lab(np.array([70, 10, 12], np.uint8))) == "dark red"


def test_rgb_to_lab_reference_values():
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.02)  # published sRGB red


def test_rule_on_a_real_photo_with_a_crude_label_map():
    cbook = pytest.importorskip("matplotlib.cbook")
    from dlcr.io.images import read_rgb

    img = read_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # navy uniform, white shirt
    lab = np.zeros(img.shape[:2], np.uint8)
    lab[500:600, 20:200] = 7  # the uniform jacket, left of the shirt
    lab[550:600, 300:500] = 7
    lab[430:520, 235:275] = 5  # the white shirt collar area
    up = RuleCaptioner().describe(img, lab)[0]
    assert up.garment == "jacket" and up.colour in ("black", "navy") and up.pattern == "plain"
    shirt = RuleCaptioner().describe(img, np.where(lab == 5, 5, 0).astype(np.uint8))[0]
    assert shirt.colour in ("white", "light gray")


def test_rule_input_errors():
    cap = RuleCaptioner()
    img = np.zeros((8, 4, 3), np.uint8)
    with pytest.raises(InputError, match="needs a LIP label map"):
        cap([img], [None])
    with pytest.raises(InputError, match="matching"):
        cap([img], [np.zeros((4, 4), np.uint8)])
    with pytest.raises(InputError, match="1 images but 2"):
        cap([img], [None, None])


# --------------------------------------------------------------------------------------------
# splitting and voting
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a person wearing a red and white striped t-shirt, blue pants and white shoes",
            {"upper": "red and white striped t-shirt", "lower": "blue pants", "footwear": "white shoes"},
        ),
        (
            "The person in the image is wearing a black jacket, blue jeans, and a pair of white sneakers. "
            "She has brown hair and carries a black bag.",
            {"upper": "black jacket", "lower": "blue jeans", "footwear": "white sneakers"},
        ),
        ("1. Red T-shirt\n2. Blue jeans\n3. White sneakers",
         {"upper": "red t-shirt", "lower": "blue jeans", "footwear": "white sneakers"}),
        ("- navy blue hoodie\n- grey sweatpants\n- black boots",
         {"upper": "navy blue hoodie", "lower": "gray sweatpants", "footwear": "black boots"}),
        ("Clothing items: white shirt; khaki shorts", {"upper": "white shirt", "lower": "khaki shorts"}),
        ("a white shirt and a black jacket", {"upper": "white shirt"}),  # first mention of a part wins
        ("a man in red", {"upper": "red"}),  # a colour without a garment fills the first free part
        ("a man with black hair", {}),
    ],
)  # fmt: skip
def test_split_outfit_text(text, expected):
    assert split_outfit_text(text) == expected


def test_vote_majority_ties_and_missing_parts():
    parsed = [
        {"upper": "red t-shirt", "lower": "blue jeans"},
        {"upper": "white shirt", "lower": "blue jeans"},
        {"upper": "white shirt"},
        {"upper": "red t-shirt", "lower": "black pants"},
    ]
    # upper: 2 vs 2, "red t-shirt" seen first; lower: majority; footwear: nobody mentions it
    assert vote_parts(parsed) == {"upper": "red t-shirt", "lower": "blue jeans", "footwear": ""}
    assert vote_parts(parsed[1:])["upper"] == "white shirt"
    assert vote_parts([]) == {"upper": "", "lower": "", "footwear": ""}


def test_vote_summarizer_on_captions():
    caps = [
        "a person wearing a red t-shirt, blue pants and white shoes",
        "a person wearing a red t-shirt and blue pants",
        "a person wearing an orange t-shirt, black pants and white shoes",
    ]
    o = VoteSummarizer()("k1", caps)
    assert o == Outfit("k1", "red t-shirt", "blue pants", "white shoes")
    assert o.prompt == "a person wearing red t-shirt, blue pants, white shoes"


def test_registries():
    assert isinstance(create_captioner("rule"), RuleCaptioner)
    assert isinstance(create_summarizer("vote"), VoteSummarizer)
    with pytest.raises(UnknownNameError, match="did you mean 'rule'"):
        create_captioner("rul")
    with pytest.raises(ConfigError, match="min_pixels"):
        create_captioner("rule", min_pix=3)


# --------------------------------------------------------------------------------------------
# describe_dataset
# --------------------------------------------------------------------------------------------


class _Counting:
    """Wraps a captioner: counts the images it captions; can fail after some batches (a kill)."""

    name = "counting"

    def __init__(self, inner, fail_after: int | None = None, model: str | None = None):
        self.inner, self.fail_after, self.batches, self.seen = inner, fail_after, 0, []
        self.model = model or inner.model

    def __call__(self, images, labels):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        self.seen += [img.shape for img in images]
        return self.inner(images, labels)


@pytest.fixture()
def toy(tmp_path):
    samples, outfits, images, labels = make_toy_dataset(
        tmp_path / "data", n_persons=3, outfits_per_person=2, images_per_outfit=2, height=64, width=32,
        empty_masks=1,
    )  # fmt: skip
    return samples, outfits, images, labels


def _run(toy, out, captioner=None, **kw):
    samples, _, images, labels = toy
    return describe_dataset(
        samples,
        images,
        labels,
        out,
        captioner=captioner or RuleCaptioner(),
        summarizer=VoteSummarizer(),
        **kw,
    )


def test_describe_dataset_outputs(toy, tmp_path):
    samples, truth, _, _ = toy
    out = tmp_path / "desc"
    rep = _run(toy, out, batch_size=4)
    assert (rep.total, rep.captioned, rep.reused, rep.skipped_empty) == (12, 11, 0, 1)
    assert rep.empty_paths == (samples[-1].path,)
    caps = read_captions(out)
    assert sorted(r["path"] for r in caps) == sorted(s.path for s in samples[:-1])
    assert {r["model"] for r in caps} == {RuleCaptioner().model}
    outfits = read_outfits(out / OUTFITS_TABLE)
    assert set(outfits) == {s.clothes_key for s in samples}
    rows = {r["clothes_key"]: r for r in read_table(out / OUTFITS_TABLE)}
    for key, o in outfits.items():
        # the toy outfits name a colour first; the rule captioner must read it off the pixels
        for mine, true in (
            (o.upper, truth[key].upper),
            (o.lower, truth[key].lower),
            (o.footwear, truth[key].footwear),
        ):
            assert mine.split()[0] == true.split()[0], (key, mine, true)
        assert rows[key]["prompt"] == o.prompt
        assert rows[key]["n_images"] == (1 if key == samples[-1].clothes_key else 2)
    assert not list(out.glob(".*"))  # no temp files, no parts left


def test_describe_dataset_resumes_after_a_kill(toy, tmp_path):
    out = tmp_path / "desc"
    killed = _Counting(RuleCaptioner(), fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        _run(toy, out, killed, batch_size=3)
    assert not (out / CAPTIONS_TABLE).exists()
    parts = list((out / ".captions.parts").glob("part-*.parquet"))
    assert len(parts) == 2  # two committed batches survive the kill
    again = _Counting(RuleCaptioner())
    rep = _run(toy, out, again, batch_size=3)
    assert (rep.captioned, rep.reused) == (5, 6)
    assert len(again.seen) == 5
    assert not (out / ".captions.parts").exists()
    fresh = tmp_path / "fresh"
    _run(toy, fresh, batch_size=3)
    assert read_table(out / CAPTIONS_TABLE) == read_table(fresh / CAPTIONS_TABLE)
    assert read_outfits(out) == read_outfits(fresh)
    # a complete re-run does nothing; another captioner model recaptions everything
    idle = _Counting(RuleCaptioner())
    rep = _run(toy, out, idle)
    assert (rep.captioned, rep.reused, rep.summarized, idle.batches) == (0, 11, 0, 0)
    other = _Counting(RuleCaptioner(), model="other-model")
    rep = _run(toy, out, other)
    assert (rep.captioned, rep.summarized) == (11, 6)
    assert {r["model"] for r in read_captions(out)} == {"other-model"}


def test_describe_dataset_skips_images_flagged_empty(toy, tmp_path):
    samples, _, images, labels = toy
    flagged = samples[0].path
    rows = []
    for s in samples:
        lab = read_label_map(labels / s.path)
        n = int(np.isin(lab, [5, 9, 18, 19]).sum())
        rows.append({"path": s.path, "height": 64, "width": 32, "clothes_pixels": n,
                     "empty": n == 0 or s.path == flagged})  # fmt: skip
    write_table(labels / MASKS_TABLE, rows, schema=MASKS_SCHEMA)
    rep = _run(toy, tmp_path / "desc")
    assert set(rep.empty_paths) == {flagged, samples[-1].path}
    assert flagged not in {r["path"] for r in read_captions(tmp_path / "desc")}


def test_describe_dataset_keeps_other_rows_and_errors(toy, tmp_path):
    samples, _, images, labels = toy
    out = tmp_path / "desc"
    first = samples[:4]
    describe_dataset(first, images, labels, out, captioner=RuleCaptioner(), summarizer=VoteSummarizer())
    describe_dataset(
        samples[4:8], images, labels, out, captioner=RuleCaptioner(), summarizer=VoteSummarizer()
    )
    assert len(read_captions(out)) == 8  # the first run's rows are kept
    (out / ".captions.parquet.abc.tmp").write_bytes(b"junk")  # a killed writer's temp file
    (labels / samples[9].path).unlink()
    with pytest.raises(InputError, match=samples[9].path.replace(".png", "")):
        describe_dataset(samples, images, labels, out, captioner=RuleCaptioner(), summarizer=VoteSummarizer())
    assert not (out / ".captions.parquet.abc.tmp").exists()
    bad = [Sample(path=samples[0].path, pid=0, camid=1, clothes_id=0, split="train")]
    with pytest.raises(InputError, match="no clothes_key"):
        describe_dataset(bad, images, labels, out, captioner=RuleCaptioner(), summarizer=VoteSummarizer())
    with pytest.raises(InputError, match="not found"):
        read_outfits(tmp_path / "nowhere")


def test_describe_dataset_detects_empty_label_maps_without_a_table(tmp_path):
    """A sample whose label map has no clothes and no masks table: detected and skipped."""
    img = np.zeros((16, 8, 3), np.uint8)
    write_png(tmp_path / "im" / "a.png", img)
    write_png(tmp_path / "lab" / "a.png", np.zeros((16, 8), np.uint8))
    s = [Sample(path="a.png", pid=0, camid=1, clothes_id=0, split="train", clothes_key="0_0")]
    rep = describe_dataset(s, tmp_path / "im", tmp_path / "lab", tmp_path / "out",
                           captioner=RuleCaptioner(), summarizer=VoteSummarizer())  # fmt: skip
    assert (rep.skipped_empty, rep.outfits) == (1, 0)
    assert read_outfits(tmp_path / "out") == {}
