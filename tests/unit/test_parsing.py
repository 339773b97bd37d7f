"""Label sets, clothes masks, label mapping, folder/synthcc backends and parse_dataset."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.errors import ConfigError, DatasetError, DlcrError, ImageError, InputError, UnsafePathError
from dlcr.generation.label_schemes import lip_id_for_name, lip_table_for_labels
from dlcr.generation.parsers import PARSERS, create_parser
from dlcr.generation.parsers.folder import FolderParser, SynthCCParser
from dlcr.generation.parsing import HumanParser, label_path, parse_dataset
from dlcr.io.images import read_label_map
from dlcr.io.tables import read_table
from dlcr.lip import (
    ACCESSORY_LABELS,
    ATR_LABELS,
    ATR_TO_LIP,
    BODY_PARTS,
    CLOTHES_LABELS,
    LIP_LABELS,
    clothes_mask,
    dilate_mask,
    map_labels,
    part_masks,
)

# --------------------------------------------------------------------------- label sets


def test_label_vocabularies():
    assert len(LIP_LABELS) == 20 and LIP_LABELS[5] == "Upper-clothes" and LIP_LABELS[19] == "Right-shoe"
    assert len(ATR_LABELS) == 18 and ATR_LABELS[8] == "Belt" and ATR_LABELS[16] == "Bag"
    assert sorted(CLOTHES_LABELS) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19]
    assert set(BODY_PARTS) == {"upper", "lower", "footwear"}
    union = set().union(*BODY_PARTS.values())
    assert union | ACCESSORY_LABELS == CLOTHES_LABELS
    assert not union & ACCESSORY_LABELS
    # dress and jumpsuit cover both halves
    assert {6, 10} <= BODY_PARTS["upper"] and {6, 10} <= BODY_PARTS["lower"]
    assert BODY_PARTS["footwear"] == {8, 18, 19}
    with pytest.raises(TypeError):
        BODY_PARTS["hat"] = frozenset({1})  # read-only


# --------------------------------------------------------------------------- masks

LABELS = np.array(
    [
        [0, 1, 2, 2, 0, 0],
        [13, 5, 5, 14, 11, 0],
        [0, 6, 10, 7, 3, 4],
        [0, 9, 12, 16, 17, 0],
        [0, 8, 18, 19, 0, 15],
    ],
    dtype=np.uint8,
)


def test_clothes_mask_on_hand_built_map():
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 0, 1, 0],
            [0, 1, 1, 1, 1, 1],
            [0, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
        ],
        dtype=bool,
    )
    m = clothes_mask(LABELS)
    assert m.dtype == bool and m.shape == LABELS.shape
    np.testing.assert_array_equal(m, expected)
    # other integer dtypes give the same answer; a custom label set is honoured
    np.testing.assert_array_equal(clothes_mask(LABELS.astype(np.int64)), expected)
    np.testing.assert_array_equal(clothes_mask(LABELS, label_set={2}), LABELS == 2)


def test_part_masks_overlap_on_dress_and_jumpsuit():
    parts = part_masks(LABELS)
    assert set(parts) == {"upper", "lower", "footwear"}
    np.testing.assert_array_equal(parts["upper"], np.isin(LABELS, [5, 6, 7, 10]))
    np.testing.assert_array_equal(parts["lower"], np.isin(LABELS, [6, 9, 10, 12]))
    np.testing.assert_array_equal(parts["footwear"], np.isin(LABELS, [8, 18, 19]))
    assert parts["upper"][2, 1] and parts["lower"][2, 1]  # dress pixel
    assert not any(p[1, 4] for p in parts.values())  # scarf: clothes, but no part


def _reference_dilation(mask: np.ndarray, r: int, kernel: str) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        for dy, dx in itertools.product(range(-r, r + 1), repeat=2):
            if kernel == "cross" and dy and dx:
                continue
            if 0 <= y + dy < h and 0 <= x + dx < w:
                out[y + dy, x + dx] = True
    return out


def test_dilation_shapes():
    labels = np.zeros((9, 9), np.uint8)
    labels[4, 4] = 5
    sq = clothes_mask(labels, dilate=2)
    assert sq.sum() == 25 and sq[2:7, 2:7].all()
    cross = clothes_mask(labels, dilate=2, kernel="cross")
    assert cross.sum() == 9 and cross[4, 2:7].all() and cross[2:7, 4].all() and not cross[3, 3]
    # clipped at the border
    labels[:] = 0
    labels[0, 0] = 9
    assert clothes_mask(labels, dilate=3).sum() == 16


@pytest.mark.parametrize("r", [1, 2, 3, 5, 6, 7, 13])
@pytest.mark.parametrize("kernel", ["square", "cross"])
def test_dilation_matches_brute_force(r, kernel):
    rng = np.random.default_rng(r)
    mask = rng.random((23, 31)) < 0.03
    np.testing.assert_array_equal(dilate_mask(mask, r, kernel), _reference_dilation(mask, r, kernel))


def test_mask_input_errors():
    with pytest.raises(InputError):
        clothes_mask(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError):
        clothes_mask(np.zeros((2, 2), np.float32))
    with pytest.raises(InputError):
        clothes_mask(LABELS, dilate=-1)
    with pytest.raises(InputError):
        clothes_mask(LABELS, dilate=1, kernel="disk")


# --------------------------------------------------------------------------- label mapping


def test_atr_to_lip_table():
    atr = np.arange(18, dtype=np.uint8).reshape(3, 6)
    lip = map_labels(atr, "atr")
    assert lip.dtype == np.uint8 and lip.shape == atr.shape
    expected = {
        "Background": "Background", "Hat": "Hat", "Hair": "Hair", "Sunglasses": "Sunglasses",
        "Upper-clothes": "Upper-clothes", "Skirt": "Skirt", "Pants": "Pants", "Dress": "Dress",
        "Belt": "Pants", "Left-shoe": "Left-shoe", "Right-shoe": "Right-shoe", "Face": "Face",
        "Left-leg": "Left-leg", "Right-leg": "Right-leg", "Left-arm": "Left-arm",
        "Right-arm": "Right-arm", "Bag": "Background", "Scarf": "Scarf",
    }  # fmt: skip
    got = {ATR_LABELS[a]: LIP_LABELS[int(lip.flat[a])] for a in range(18)}
    assert got == expected
    # an ATR clothes mask equals the LIP clothes mask after mapping (bag excluded, belt included)
    assert clothes_mask(lip).flat[8] and not clothes_mask(lip).flat[16]
    np.testing.assert_array_equal(map_labels(np.array([[3, 1]]), [0, 7, 7, 2]), [[2, 7]])
    with pytest.raises(InputError, match="label 18"):
        map_labels(np.array([[18]]), "atr")
    with pytest.raises(ConfigError):
        map_labels(atr, "pascal")
    with pytest.raises(ValueError):
        ATR_TO_LIP[0] = 3  # read-only


def test_names_to_lip_ids():
    assert lip_id_for_name("upper_clothes") == 5
    assert lip_id_for_name("LEFT SHOE") == 18
    assert lip_id_for_name("jumpsuit") == 10
    assert lip_id_for_name("Gloves") == 3
    assert lip_id_for_name("belt") == 9 and lip_id_for_name("Bag") == 0
    assert lip_id_for_name("torso-skin") is None

    table, unmapped = lip_table_for_labels(dict(enumerate(ATR_LABELS)))
    np.testing.assert_array_equal(table, ATR_TO_LIP)
    assert unmapped == ()
    table, unmapped = lip_table_for_labels({"0": "background", "1": "Torso-skin", "2": "Upper_Clothes"})
    assert table.tolist() == [0, 0, 5] and unmapped == ("Torso-skin",)
    table, unmapped = lip_table_for_labels(
        {0: "background", 1: "Torso-skin", 2: "Upper_Clothes"}, {"torso skin": 14, "UPPER-CLOTHES": 7}
    )
    assert table.tolist() == [0, 14, 7] and unmapped == ()
    with pytest.raises(ConfigError, match="not a class of the model"):
        lip_table_for_labels({0: "background"}, {"hat": 1})
    with pytest.raises(ConfigError, match="LIP id"):
        lip_table_for_labels({0: "background"}, {"background": 25})


# --------------------------------------------------------------------------- folder / synthcc


def _save_rgb(path: Path, h: int, w: int, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _save_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)


def test_folder_parser_reads_and_checks(tmp_path):
    root, labels_dir = tmp_path / "data", tmp_path / "labels"
    _save_rgb(root / "cam1" / "a.jpg", 5, 6)
    _save_rgb(root / "cam1" / "b.png", 4, 4)
    _save_labels(labels_dir / "cam1" / "a.png", LABELS)
    _save_labels(labels_dir / "cam1" / "b.png", np.zeros((3, 4)))  # wrong size

    parser = FolderParser(labels_dir)
    (out,) = parser.parse_files(["cam1/a.jpg"], root)
    np.testing.assert_array_equal(out, LABELS)
    with pytest.raises(ImageError, match=r"is 4x3 but image 'cam1/b.png' is 4x4"):
        parser.parse_files(["cam1/b.png"], root)
    with pytest.raises(ImageError, match="no label map"):
        parser.parse_files(["cam2/a.jpg"], root)
    with pytest.raises(UnsafePathError):
        parser.parse_files(["../labels/cam1/a.png"], root)
    with pytest.raises(UnsafePathError):
        label_path(labels_dir, "../../etc/passwd")
    with pytest.raises(InputError, match="parse_files"):
        parser.parse([np.zeros((5, 6, 3), np.uint8)])

    # ATR label maps are converted on reading
    atr_dir = tmp_path / "atr"
    _save_labels(atr_dir / "cam1" / "a.png", np.full((5, 6), 8))  # belt
    (out,) = FolderParser(atr_dir, label_set="atr").parse_files(["cam1/a.jpg"], root)
    assert (out == 9).all()
    _save_labels(labels_dir / "cam1" / "a.png", np.full((5, 6), 40))
    with pytest.raises(ImageError, match="label 40"):
        parser.parse_files(["cam1/a.jpg"], root)


def test_synthcc_parser_path_rule(tmp_path):
    rel = "synthcc/train/0001_2_c3_000.png"
    _save_rgb(tmp_path / rel, 5, 6)
    _save_labels(tmp_path / "synthcc" / "masks" / "train" / "0001_2_c3_000.png", LABELS)
    parser = create_parser("synthcc")
    assert isinstance(parser, SynthCCParser)
    assert parser.label_file(rel, tmp_path) == (tmp_path / "synthcc/masks/train/0001_2_c3_000.png").resolve()
    (out,) = parser.parse_files([rel], tmp_path)
    np.testing.assert_array_equal(out, LABELS)
    for bad in ("train/0001_2_c3_000.png", "other/train/x.png", "synthcc/masks/train/x.png"):
        with pytest.raises(DatasetError, match="synthcc"):
            parser.parse_files([bad], tmp_path)
    with pytest.raises(UnsafePathError):
        parser.parse_files(["synthcc/train/../../../outside.png"], tmp_path)


def test_registry_and_create_parser(tmp_path):
    assert PARSERS.names() == ["folder", "hf", "pose", "schp", "synthcc"]
    assert isinstance(create_parser("folder", labels_dir=tmp_path), FolderParser)
    with pytest.raises(DlcrError, match="did you mean 'schp'"):
        create_parser("schpp")
    with pytest.raises(ConfigError, match="labels_dir"):
        create_parser("folder", label_dir=tmp_path)


# --------------------------------------------------------------------------- parse_dataset


class FakeParser(HumanParser):
    """Labels an image by its mean intensity: dark images (< 50) get no clothes at all."""

    name = "fake"

    def __init__(self, batch_size: int = 2, fail_after: int | None = None):
        self.batch_size = batch_size
        self.calls: list[int] = []
        self.fail_after = fail_after

    def parse(self, images):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls.append(len(images))
        out = []
        for img in images:
            lab = np.zeros(img.shape[:2], np.uint8)
            if img.mean() >= 50:
                lab[: img.shape[0] // 2] = 5
                lab[img.shape[0] // 2 :] = 9
                lab[0, 0] = 13
            out.append(lab)
        return out


@pytest.fixture
def small_dataset(tmp_path):
    root = tmp_path / "data"
    paths = ["train/001_1_c1.jpg", "train/001_2_c2.png", "query/002_1_c1.png", "query/sub/003_1_c2.png"]
    sizes = [(8, 4), (6, 6), (10, 5), (7, 3)]
    for p, (h, w), v in zip(paths, sizes, [200, 10, 120, 90], strict=True):
        _save_rgb(root / p, h, w, v)
    return root, paths, sizes


def test_parse_dataset_writes_resumes_and_counts_empty(small_dataset, tmp_path):
    root, paths, sizes = small_dataset
    out = tmp_path / "masks"
    parser = FakeParser(batch_size=3)
    rep = parse_dataset(parser, paths, root, out)
    assert (rep.total, rep.done, rep.skipped_existing, rep.empty) == (4, 4, 0, 1)
    assert rep.empty_paths == ("train/001_2_c2.png",)
    assert parser.calls == [3, 1]  # batched
    for p, (h, w) in zip(paths, sizes, strict=True):
        lab = read_label_map(out / Path(p).with_suffix(".png"))
        assert lab.shape == (h, w)
    rows = {r["path"]: r for r in read_table(out / "masks.parquet")}
    assert set(rows) == set(paths)
    assert rows["train/001_1_c1.jpg"] == {
        "path": "train/001_1_c1.jpg", "height": 8, "width": 4, "clothes_pixels": 31, "empty": False,
    }  # fmt: skip
    assert rows["train/001_2_c2.png"]["empty"] and rows["train/001_2_c2.png"]["clothes_pixels"] == 0
    assert not list(out.rglob("*.tmp"))

    # second run: nothing to parse, same counts
    parser2 = FakeParser()
    rep2 = parse_dataset(parser2, paths, root, out)
    assert parser2.calls == []
    assert (rep2.done, rep2.skipped_existing, rep2.empty, rep2.empty_paths) == (0, 4, 1, rep.empty_paths)

    # a lost label map (and a lost table) is rebuilt; only that image is parsed again
    (out / "query/sub/003_1_c2.png").unlink()
    (out / "masks.parquet").unlink()
    parser3 = FakeParser()
    rep3 = parse_dataset(parser3, paths + paths[:1], root, out)  # duplicates are ignored
    assert parser3.calls == [1] and (rep3.total, rep3.done, rep3.skipped_existing, rep3.empty) == (4, 1, 3, 1)
    assert len(read_table(out / "masks.parquet")) == 4


def test_parse_dataset_survives_a_crash_and_keeps_other_rows(small_dataset, tmp_path):
    root, paths, _ = small_dataset
    out = tmp_path / "masks"
    with pytest.raises(RuntimeError):
        parse_dataset(FakeParser(batch_size=1, fail_after=2), paths, root, out)
    assert len(list(out.rglob("*.png"))) == 2 and not (out / "masks.parquet").exists()
    parser = FakeParser(batch_size=1)
    rep = parse_dataset(parser, paths, root, out)
    assert (rep.done, rep.skipped_existing) == (2, 2) and len(parser.calls) == 2
    # a run over a subset keeps the rows of the other images in the table
    rep = parse_dataset(FakeParser(), paths[:1], root, out)
    assert rep.total == 1 and len(read_table(out / "masks.parquet")) == 4


def test_parse_dataset_errors(small_dataset, tmp_path):
    root, paths, _ = small_dataset
    out = tmp_path / "masks"
    with pytest.raises(InputError, match="share the label map"):
        parse_dataset(FakeParser(), ["train/001_1_c1.jpg", "train/001_1_c1.png"], root, out)
    with pytest.raises(UnsafePathError):
        parse_dataset(FakeParser(), ["../outside.png"], root, out)

    class BadParser(FakeParser):
        def parse(self, images):
            return [np.full(img.shape[:2], 30, np.uint8) for img in images]

    with pytest.raises(DlcrError, match="label 30"):
        parse_dataset(BadParser(), paths[:1], root, out)


def test_parse_dataset_with_synthcc_ground_truth(tmp_path):
    rels = ["synthcc/train/0001_1_c1_000.png", "synthcc/query/0002_1_c2_000.png"]
    gts = [LABELS, np.zeros((5, 6), np.uint8)]
    for rel, gt in zip(rels, gts, strict=True):
        _save_rgb(tmp_path / rel, 5, 6)
        _save_labels(tmp_path / "synthcc/masks" / rel.split("/", 1)[1], gt)
    rep = parse_dataset(create_parser("synthcc"), rels, tmp_path, tmp_path / "out")
    assert (rep.done, rep.empty, rep.empty_paths) == (2, 1, (rels[1],))
    np.testing.assert_array_equal(read_label_map(tmp_path / "out" / rels[0]), LABELS)


def test_mask_bbox():
    from dlcr.lip import mask_bbox

    m = np.zeros((6, 5), dtype=bool)
    assert mask_bbox(m) is None
    m[1, 3] = m[4, 1] = True
    assert mask_bbox(m) == (1, 5, 1, 4)
