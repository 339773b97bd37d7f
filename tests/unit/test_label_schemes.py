"""Segmenter label schemes (LIP, ATR, CIHP, Fashionpedia, garment words) -> LIP ids, and the
segmenters built in the public formats (tests/public_formats/segmenters.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dlcr.config import load_config
from dlcr.errors import ConfigError
from dlcr.generation.label_schemes import (
    FASHIONPEDIA_LABELS,
    lip_id_for_name,
    lip_table_for_labels,
    normalize_label_name,
    require_clothes_classes,
)
from dlcr.lip import (
    ATR_LABELS,
    ATR_TO_LIP,
    CIHP_LABELS,
    CLOTHES_LABELS,
    LIP_LABELS,
    PASCAL_LABELS,
    map_labels,
)

# LIP ids: 1 Hat, 3 Glove, 4 Sunglasses, 5 Upper-clothes, 6 Dress, 7 Coat, 8 Socks, 9 Pants,
# 10 Jumpsuits, 11 Scarf, 12 Skirt, 18 Left-shoe
GARMENT_WORDS = {
    "shirt": 5, "t-shirt": 5, "T-Shirt": 5, "tshirt": 5, "top": 5, "blouse": 5, "sweater": 5,
    "hoodie": 5, "cardigan": 7, "jacket": 7, "coat": 7, "vest": 5, "shorts": 9, "jeans": 9,
    "trousers": 9, "leggings": 9, "tights": 9, "skirt": 12, "dress": 6, "jumpsuit": 10, "socks": 8,
    "gloves": 3, "boots": 18, "sneakers": 18, "sandals": 18, "shoes": 18, "scarf": 11,
    "sunglasses": 4, "Sunglass": 4, "belt": 9, "cap": 1,
}  # fmt: skip


def test_garment_words_map_to_the_clothes_set():
    got = {name: lip_id_for_name(name) for name in GARMENT_WORDS}
    assert got == GARMENT_WORDS
    # every garment word is a clothes label; a cap is a hat (worn, but not in the paper's set)
    assert all(v in CLOTHES_LABELS for k, v in GARMENT_WORDS.items() if k != "cap")


def test_case_and_punctuation_do_not_matter():
    for spelling in ("Upper-clothes", "upper_clothes", "UPPER CLOTHES", "Upper.Clothes", "upperclothes"):
        assert lip_id_for_name(spelling) == 5
    assert normalize_label_name(" T-Shirt ") == normalize_label_name("t_shirt") == "tshirt"
    assert lip_id_for_name("Left Shoe") == 18 and lip_id_for_name("right-shoe") == 19


def test_names_listing_several_items_take_the_first_known():
    assert lip_id_for_name("shirt, blouse") == 5
    assert lip_id_for_name("top, t-shirt, sweatshirt") == 5
    assert lip_id_for_name("tights, stockings") == 9
    assert lip_id_for_name("bag, wallet") == 0
    assert lip_id_for_name("headband, head covering, hair accessory") == 1
    assert lip_id_for_name("unicorn, skirt") == 12
    assert lip_id_for_name("unicorn, dragon") is None


def test_lip_atr_and_cihp_schemes():
    table, unmapped = lip_table_for_labels(dict(enumerate(LIP_LABELS)))
    np.testing.assert_array_equal(table, np.arange(20))
    assert unmapped == ()
    table, unmapped = lip_table_for_labels(dict(enumerate(ATR_LABELS)))
    np.testing.assert_array_equal(table, ATR_TO_LIP)
    assert unmapped == ()
    # CIHP: LIP's classes, except Torso-skin (not clothes; LIP labels it background)
    table, unmapped = lip_table_for_labels(dict(enumerate(CIHP_LABELS)))
    expected = np.arange(20)
    expected[10] = 0
    np.testing.assert_array_equal(table, expected)
    assert unmapped == ("Torso-skin",)
    np.testing.assert_array_equal(map_labels(np.arange(20).reshape(4, 5), "cihp").ravel(), expected)


@pytest.mark.parametrize("with_background", [False, True])
def test_fashionpedia_scheme(with_background):
    names = (("Everything Else",) if with_background else ()) + FASHIONPEDIA_LABELS
    assert len(names) == 46 + with_background
    table, unmapped = lip_table_for_labels(dict(enumerate(names)))
    assert unmapped == ()
    lip = {n: LIP_LABELS[int(table[i])] for i, n in enumerate(names)}
    assert lip["shirt, blouse"] == lip["top, t-shirt, sweatshirt"] == lip["sweater"] == "Upper-clothes"
    assert lip["jacket"] == lip["coat"] == lip["cardigan"] == lip["cape"] == "Coat"
    assert lip["pants"] == lip["shorts"] == lip["belt"] == lip["tights, stockings"] == "Pants"
    assert (lip["skirt"], lip["dress"], lip["jumpsuit"]) == ("Skirt", "Dress", "Jumpsuits")
    assert (lip["shoe"], lip["sock"], lip["glove"], lip["scarf"]) == ("Left-shoe", "Socks", "Glove", "Scarf")
    assert (lip["glasses"], lip["hat"]) == ("Sunglasses", "Hat")
    # garment parts and decorations lie on a garment: inside the clothes mask
    for part in ("sleeve", "collar", "pocket", "zipper", "hood", "neckline", "ruffle", "tassel"):
        assert int(table[names.index(part)]) in CLOTHES_LABELS, part
    # carried things are not clothes
    for thing in ("bag, wallet", "umbrella", "watch"):
        assert lip[thing] == "Background"
    if with_background:
        assert lip["Everything Else"] == "Background"


def test_pascal_and_label_sets_without_clothes_are_refused():
    table, unmapped = lip_table_for_labels(dict(enumerate(PASCAL_LABELS)))
    assert {"Torso", "Upper Arms", "Lower Legs"} <= set(unmapped)
    with pytest.raises(ConfigError, match=r"no clothes class.*Torso->Background.*parser_label_map"):
        require_clothes_classes(table, dict(enumerate(PASCAL_LABELS)), "schp:pascal")
    table, _ = lip_table_for_labels(dict(enumerate(PASCAL_LABELS)), {"Torso": 5})
    require_clothes_classes(table, dict(enumerate(PASCAL_LABELS)), "schp:pascal")  # fine now


def test_label_map_overrides_are_checked():
    names = {0: "background", 1: "person"}
    table, _ = lip_table_for_labels(names, {"Person": 5})
    assert table.tolist() == [0, 5]
    with pytest.raises(ConfigError, match="not a class of the model"):
        lip_table_for_labels(names, {"shirt": 5})
    with pytest.raises(ConfigError, match="LIP id"):
        lip_table_for_labels(names, {"person": True})


# --------------------------------------------------------------------------- segmenters on disk

pytest.importorskip("transformers")

from dlcr.generation.parsers.hf_segmentation import HFSegmentationParser  # noqa: E402
from public_formats.segmenters import (  # noqa: E402
    atr_segformer,
    fashionpedia_segformer,
    lip_segformer,
    write_segformer,
)


def _images():
    rng = np.random.default_rng(4)
    return [
        rng.integers(0, 256, (29, 17, 3), dtype=np.uint8),
        rng.integers(0, 256, (12, 33, 3), dtype=np.uint8),
    ]


@pytest.fixture(scope="module")
def segmenters(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmenters")
    return {
        "atr": atr_segformer(root / "segformer_b2_clothes"),
        "lip": lip_segformer(root / "segformer-lip"),
        "fashionpedia": fashionpedia_segformer(root / "segformer-b3-fashion"),
        # the classifier says "shirt, blouse" (1) everywhere
        "fashionpedia-shirt": fashionpedia_segformer(root / "shirt", winner=1),
        # a model of people, not of clothes
        "person": write_segformer(root / "person", ["background", "person", "bicycle"]),
    }


def test_public_segmenters_map_to_lip(segmenters):
    atr = HFSegmentationParser(segmenters["atr"], device="cpu")
    np.testing.assert_array_equal(atr.table, ATR_TO_LIP)
    lip = HFSegmentationParser(segmenters["lip"], device="cpu")
    np.testing.assert_array_equal(lip.table, np.arange(20))
    fp = HFSegmentationParser(segmenters["fashionpedia"], device="cpu")
    assert fp.unmapped == () and fp.table.size == 47
    assert {int(v) for v in fp.table} & {5, 7, 9, 12, 18}
    for parser in (atr, lip, fp):
        labels = parser.parse(_images())
        assert [lab.shape for lab in labels] == [(29, 17), (12, 33)]
    # with a Fashionpedia-labelled model, upper clothes appear
    shirt = HFSegmentationParser(segmenters["fashionpedia-shirt"], device="cpu")
    assert all((lab == 5).all() for lab in shirt.parse(_images()))


def test_a_segmenter_without_clothes_classes_is_an_error(segmenters):
    with pytest.raises(ConfigError, match=r"no clothes class.*background->Background, person->Background"):
        HFSegmentationParser(segmenters["person"], device="cpu")
    parser = HFSegmentationParser(segmenters["person"], label_map={"person": 5}, device="cpu")
    assert parser.table.tolist() == [0, 5, 0]


def test_parser_label_map_reaches_the_parser_from_the_config(segmenters):
    from dlcr.cli.generate import _parser

    folder = str(segmenters["person"])
    cfg = load_config(None, ("generate.parser=hf", f"generate.parser_model={folder}",
                             'generate.parser_label_map={"Person": 5, "bicycle": 0}'))  # fmt: skip
    parser = _parser(cfg)
    assert parser.table.tolist() == [0, 5, 0]
    with pytest.raises(ConfigError, match="no clothes class"):
        _parser(load_config(None, ("generate.parser=hf", f"generate.parser_model={folder}")))
    with pytest.raises(ConfigError, match="parser_label_map applies to the 'hf' and 'schp' parsers"):
        _parser(load_config(None, ("generate.parser=synthcc", 'generate.parser_label_map={"a": 5}')))
