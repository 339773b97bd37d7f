"""Dataset parsers on tiny trees in each benchmark's layout (real 8x4 image files)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.data.datasets import (
    CCReIDDataset,
    create_dataset,
    dataset_from_samples,
    dataset_names,
    read_samples,
    split_stats,
    write_samples,
)
from dlcr.errors import DatasetError, ImageError, UnsafePathError
from dlcr.registry import UnknownNameError
from dlcr.types import EvalProtocol


def img(path: Path, color: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", (4, 8), (color, 10, 20)).save(path, format=fmt)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    # digits and "_c<n>" in the root itself: ids must come from file names only
    r = tmp_path / "data_c9_77" / "P123_C45"
    r.mkdir(parents=True)
    return r


def by_path(samples):
    return {s.path: s for s in samples}


# ---------------------------------------------------------------- LTCC / synthcc

LTCC_FILES = {
    "train": ["001_1_c1_000.png", "001_2_c2_001.png", "005_1_c3_000.png", "005_1_c11_004.png"],
    "query": ["010_1_c1_000.png", "011_2_c4_000.png"],
    "test": ["010_1_c2_000.png", "010_2_c3_000.png", "011_1_c1_000.png", "011_2_c5_009.png"],
}


def make_ltcc(root: Path, top: str = "LTCC_ReID") -> None:
    for folder, names in LTCC_FILES.items():
        for n in names:
            img(root / top / folder / n)


def test_ltcc_parse_relabel_and_cameras(root: Path):
    make_ltcc(root)
    ds = create_dataset("ltcc", root)
    assert isinstance(ds, CCReIDDataset) and ds.name == "ltcc" and not ds.video
    assert list(ds.splits) == ["train", "query", "gallery"]
    tr = by_path(ds.train)
    assert set(tr) == {f"LTCC_ReID/train/{n}" for n in LTCC_FILES["train"]}
    s = tr["LTCC_ReID/train/005_1_c11_004.png"]
    # pids 1,5 -> 0,1; clothes keys sorted 001_1, 001_2, 005_1 -> 0,1,2; camera 11 -> 10
    assert (s.pid, s.camid, s.clothes_id, s.clothes_key, s.split) == (1, 10, 2, "005_1", "train")
    assert tr["LTCC_ReID/train/001_2_c2_001.png"].clothes_id == 1
    assert ds.num_train_pids == 2 and ds.num_train_clothes == 3
    assert ds.clothes_keys == ["001_1", "001_2", "005_1"]
    np.testing.assert_array_equal(ds.pid2clothes, np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32))
    assert ds.pid2clothes.dtype == np.float32

    q, g = by_path(ds.query), by_path(ds.gallery)
    # test keeps pids; clothes relabelled over query+gallery: 010_1,010_2,011_1,011_2 -> 0..3
    assert q["LTCC_ReID/query/011_2_c4_000.png"].pid == 11
    assert q["LTCC_ReID/query/011_2_c4_000.png"].clothes_id == g["LTCC_ReID/test/011_2_c5_009.png"].clothes_id == 3
    assert q["LTCC_ReID/query/010_1_c1_000.png"].clothes_id == g["LTCC_ReID/test/010_1_c2_000.png"].clothes_id == 0
    assert g["LTCC_ReID/test/010_2_c3_000.png"].clothes_id == 1
    assert all(s.split == "gallery" for s in ds.gallery)
    assert [p.name for p in ds.protocols] == ["standard", "sc", "cc"]
    assert ds.protocols[2] == EvalProtocol("cc", "query", "gallery", "CC")


def test_ltcc_bad_name_strict_and_lenient(root: Path, caplog):
    make_ltcc(root)
    img(root / "LTCC_ReID" / "train" / "oops.png")
    (root / "LTCC_ReID" / "train" / "notes.txt").write_text("not an image, ignored")
    with pytest.raises(DatasetError, match="oops.png"):
        create_dataset("ltcc", root)
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        ds = create_dataset("ltcc", root, strict=False)
    assert ds.skipped == 1 and len(ds.train) == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "oops.png" in warnings[0].getMessage()


def test_layout_errors(root: Path, tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        create_dataset("ltcc", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"LTCC_ReID/\{train,query,test\}"):
        create_dataset("ltcc", root)
    make_ltcc(root)
    with pytest.raises(DatasetError, match="pass its parent"):
        create_dataset("ltcc", root / "LTCC_ReID")
    for f in (root / "LTCC_ReID" / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no images found"):
        create_dataset("ltcc", root)
    (root / "LTCC_ReID" / "query").rmdir()
    with pytest.raises(DatasetError, match="missing folder"):
        create_dataset("ltcc", root)


def test_errors_are_one_line(root: Path):
    with pytest.raises(DatasetError) as e:
        create_dataset("prcc", root)
    assert "\n" not in str(e.value)


def test_synthcc_uses_ltcc_naming_and_ignores_masks(root: Path):
    make_ltcc(root, top="synthcc")
    img(root / "synthcc" / "masks" / "train" / "weird.png")
    ds = create_dataset("synthcc", root)
    assert ds.name == "synthcc" and len(ds.train) == 4 and len(ds.gallery) == 4
    assert all(s.path.startswith("synthcc/") and "masks" not in s.path for s in ds.all_samples())
    assert [p.mode for p in ds.protocols] == ["standard", "SC", "CC"]


# ---------------------------------------------------------------- PRCC


def make_prcc(root: Path, *, val: bool = True) -> None:
    rgb = root / "prcc" / "rgb"
    for pid, names in {"001": ["A_1.jpg", "B_2.jpg", "C_3.jpg"], "003": ["A_1.jpg", "C_2.jpg"]}.items():
        for n in names:
            img(rgb / "train" / pid / n)
            if val:
                img(rgb / "val" / pid / n)
    for cam, pids in {"A": ["010", "012"], "B": ["010", "012"], "C": ["010"]}.items():
        for pid in pids:
            img(rgb / "test" / cam / pid / f"cropped_{cam}.jpg")


def test_prcc_splits_clothes_and_protocols(root: Path):
    make_prcc(root)
    ds = create_dataset("prcc", root)
    assert list(ds.splits) == ["train", "query_same", "query_diff", "gallery", "val_query", "val_gallery"]
    tr = by_path(ds.train)
    # clothes keys 001_AB, 001_C, 003_AB, 003_C -> 0..3; A and B share clothes
    a, b, c = (tr[f"prcc/rgb/train/001/{n}"] for n in ("A_1.jpg", "B_2.jpg", "C_3.jpg"))
    assert (a.camid, b.camid, c.camid) == (0, 1, 2)
    assert a.clothes_id == b.clothes_id == 0 and c.clothes_id == 1
    assert (a.clothes_key, c.clothes_key) == ("001_AB", "001_C")
    assert tr["prcc/rgb/train/003/C_2.jpg"].pid == 1 and tr["prcc/rgb/train/003/C_2.jpg"].clothes_id == 3
    np.testing.assert_array_equal(ds.pid2clothes, [[1, 1, 0, 0], [0, 0, 1, 1]])

    g = by_path(ds.gallery)["prcc/rgb/test/A/010/cropped_A.jpg"]
    qs = by_path(ds.split("query_same"))["prcc/rgb/test/B/010/cropped_B.jpg"]
    qd = by_path(ds.split("query_diff"))["prcc/rgb/test/C/010/cropped_C.jpg"]
    assert (g.pid, g.camid, qs.camid, qd.camid) == (10, 0, 1, 2)
    assert g.clothes_id == qs.clothes_id != qd.clothes_id
    assert len(ds.gallery) == 2 and len(ds.split("query_diff")) == 1
    assert ds.protocols == (EvalProtocol("sc", "query_same", "gallery", "standard"),
                            EvalProtocol("cc", "query_diff", "gallery", "standard"))
    with pytest.raises(DatasetError, match="query_same"):
        _ = ds.query
    # val is split like the test set, for the clothes-changing case: C -> A; it keeps the dataset's ids
    vq, vg = ds.val_query, ds.val_gallery
    assert sorted(s.path for s in vq) == ["prcc/rgb/val/001/C_3.jpg", "prcc/rgb/val/003/C_2.jpg"]
    assert sorted(s.path for s in vg) == ["prcc/rgb/val/001/A_1.jpg", "prcc/rgb/val/003/A_1.jpg"]
    assert {s.pid for s in vq} == {s.pid for s in vg} == {1, 3}
    assert all(q.clothes_id != g.clothes_id for q in vq for g in vg if q.pid == g.pid)


def test_prcc_val_optional_and_bad_camera_letter(root: Path):
    make_prcc(root, val=False)
    assert not {"val", "val_query", "val_gallery"} & set(create_dataset("prcc", root).splits)
    img(root / "prcc" / "rgb" / "train" / "001" / "D_1.jpg")
    with pytest.raises(DatasetError, match="D_1.jpg"):
        create_dataset("prcc", root)
    assert create_dataset("prcc", root, strict=False).skipped == 1


# ---------------------------------------------------------------- VC-Clothes


def make_vc(root: Path) -> None:
    base = root / "VC-Clothes"
    for n in ["0001-01-01-01.jpg", "0001-02-02-01.jpg", "0002-03-01-05.jpg"]:
        img(base / "train" / n)
    for cam in (1, 2, 3, 4):
        img(base / "query" / f"0100-{cam:02d}-01-01.jpg")
        img(base / "gallery" / f"0100-{cam:02d}-{1 if cam < 4 else 2:02d}-02.jpg")


def test_vcclothes_and_camera_subsets(root: Path):
    make_vc(root)
    full = create_dataset("vcclothes", root)
    sc = create_dataset("vcclothes_sc", root)
    cc = create_dataset("vcclothes_cc", root)
    assert {s.camid for s in full.query} == {0, 1, 2, 3}
    assert {s.camid for s in sc.query + sc.gallery} == {1, 2}  # cameras 2 and 3
    assert {s.camid for s in cc.query + cc.gallery} == {2, 3}  # cameras 3 and 4
    assert len(sc.train) == len(cc.train) == len(full.train) == 3
    assert [p.name for p in full.protocols] == ["standard", "sc", "cc"]
    assert [p.name for p in sc.protocols] == ["standard"] == [p.name for p in cc.protocols]
    s = by_path(full.train)["VC-Clothes/train/0002-03-01-05.jpg"]
    assert (s.pid, s.camid, s.clothes_key, s.clothes_id) == (1, 2, "002_1", 2)
    g4 = by_path(cc.gallery)["VC-Clothes/gallery/0100-04-02-02.jpg"]
    q4 = by_path(cc.query)["VC-Clothes/query/0100-04-01-01.jpg"]
    assert g4.pid == 100 and g4.clothes_id != q4.clothes_id


# ---------------------------------------------------------------- LaST


def make_last(root: Path) -> None:
    base = root / "last"
    img(base / "train" / "000007" / "000007_0_tt123_0.jpg")
    img(base / "train" / "000007" / "000007_0_tt123_1.jpg")
    img(base / "train" / "000002" / "000002_5_tt9_3.jpg")
    for part in ("val", "test"):
        img(base / part / "query" / "000100_0_tt1_0.jpg")
        img(base / part / "query" / "000101_0_tt1_0.jpg")
        img(base / part / "gallery" / "000100" / "000100_1_tt1_0.jpg")
        img(base / part / "gallery" / "000101" / "000101_2_tt1_0.jpg")
        img(base / part / "gallery" / "000101" / "000101_3_tt1_1.jpg")


def test_last(root: Path):
    make_last(root)
    ds = create_dataset("last", root)
    assert set(ds.splits) == {"train", "query", "gallery", "val_query", "val_gallery"}
    tr = by_path(ds.train)
    s = tr["last/train/000007/000007_0_tt123_1.jpg"]
    assert (s.pid, s.clothes_key) == (1, "007_1")
    assert ds.clothes_keys == ["002_3", "007_0", "007_1"]
    # every image is its own camera; gallery numbers continue after the query's
    assert [s.camid for s in ds.query] == [0, 1]
    assert [s.camid for s in ds.gallery] == [2, 3, 4]
    assert [s.pid for s in ds.gallery] == [100, 101, 101]
    g = ds.gallery
    assert g[1].clothes_id == g[2].clothes_id  # no clothes labels on test: one outfit per person
    assert ds.val_query[0].path == "last/val/query/000100_0_tt1_0.jpg"
    assert [p.name for p in ds.protocols] == ["standard"]


# ---------------------------------------------------------------- DeepChange


def make_deepchange(root: Path, *, lists: bool = True) -> None:
    base = root / "DeepChangeDataset"
    content = {
        "train-set": [("P0003_C02_D1_H08_a_b.jpg", 5), ("P0003_C02_D2_H09_a_b.jpg", 6), ("P0009_C05_D1_H10_a_b.jpg", 7)],
        "test-set-query": [("P0200_C01_D4_H08_a_b.jpg", 11)],
        "test-set-gallery": [("P0200_C01_D4_H08_c_d.jpg", 12), ("P0200_C03_D7_H11_c_d.jpg", 13)],
        "val-set-query": [("P0300_C01_D1_H08_a_b.jpg", 21)],
        "val-set-gallery": [("P0300_C02_D1_H08_a_b.jpg", 22)],
    }
    for folder, items in content.items():
        for name, _ in items:
            img(base / folder / name)
        if lists:
            (base / f"{folder}-bbox.txt").write_text("".join(f"{n},{t}\n" for n, t in items))


def test_deepchange_tracklets_as_cameras(root: Path):
    make_deepchange(root)
    ds = create_dataset("deepchange", root)
    assert set(ds.splits) == {"train", "query", "gallery", "val_query", "val_gallery"}
    q, g = ds.query[0], ds.gallery
    # same camera C01 but other tracklet: stays a valid match because camid = tracklet id
    assert (q.pid, q.camid, q.tracklet) == (200, 11, 11)
    assert [s.camid for s in g] == [12, 13]
    assert q.clothes_id == g[0].clothes_id != g[1].clothes_id  # clothes = person + day
    assert ds.clothes_keys == ["0003_D1", "0003_D2", "0009_D1"]
    assert [s.pid for s in ds.train] == [0, 0, 1]


def test_deepchange_without_lists_uses_cameras(root: Path, caplog):
    make_deepchange(root, lists=False)
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        ds = create_dataset("deepchange", root)
    assert [s.camid for s in ds.gallery] == [1, 3]
    assert any("tracklet" in r.getMessage() for r in caplog.records)


def test_deepchange_listed_but_missing(root: Path):
    make_deepchange(root)
    (root / "DeepChangeDataset" / "test-set-gallery" / "P0200_C03_D7_H11_c_d.jpg").unlink()
    with pytest.raises(DatasetError, match="P0200_C03_D7_H11_c_d.jpg"):
        create_dataset("deepchange", root)
    assert len(create_dataset("deepchange", root, strict=False).gallery) == 1


# ---------------------------------------------------------------- CCVID


def make_ccvid(root: Path) -> None:
    base = root / "CCVID"
    lists = {
        "train": [("session1/001_01", 1, 1, 3), ("session3/001_02", 1, 2, 2), ("session1/004_05", 4, 1, 2)],
        "query": [("session2/010_03", 10, 1, 2)],
        "gallery": [("session3/010_03", 10, 2, 2), ("session1/010_07", 10, 1, 1)],
    }
    for split, items in lists.items():
        for folder, _, _, n in items:
            for i in reversed(range(n)):
                img(base / folder / f"{i:05d}.jpg")
        (base / f"{split}.txt").write_text("".join(f"{f} {p} {c}\n" for f, p, c, _ in items))


def test_ccvid_tracklets(root: Path):
    make_ccvid(root)
    ds = create_dataset("ccvid", root)
    assert ds.video and [p.name for p in ds.protocols] == ["standard", "sc", "cc"]
    t0 = ds.train[0]
    assert t0.path == "CCVID/session1/001_01"
    assert t0.frames == tuple(f"CCVID/session1/001_01/{i:05d}.jpg" for i in range(3))
    assert [s.camid for s in ds.train] == [1, 2 + 12, 5]  # session3 cameras come after the 12 others
    assert [s.pid for s in ds.train] == [0, 0, 1] and [s.tracklet for s in ds.train] == [0, 1, 2]
    assert ds.clothes_keys == ["001_1", "001_2", "004_1"]
    q, g = ds.query[0], ds.gallery
    assert (q.pid, q.camid) == (10, 3) and g[0].camid == 15
    assert q.clothes_id == g[1].clothes_id != g[0].clothes_id
    assert split_stats(ds.train, video=True) == {"ids": 2, "tracklets": 3, "frames": 7, "clothes": 3, "cameras": 3}


def test_ccvid_bad_list_line(root: Path):
    make_ccvid(root)
    (root / "CCVID" / "query.txt").write_text("session2/010_03 ten 1\n")
    with pytest.raises(DatasetError, match="query.txt:1"):
        create_dataset("ccvid", root)
    (root / "CCVID" / "query.txt").write_text("../../etc 10 1\n")
    with pytest.raises(DatasetError, match="leaves"):
        create_dataset("ccvid", root)


# ---------------------------------------------------------------- custom CSV


def test_custom_csv(root: Path, tmp_path: Path):
    for n in ("a/x1.png", "a/x2.png", "b/y1.png", "b/y2.png", "b/y3.png"):
        img(root / n)
    csv = tmp_path / "d.csv"
    csv.write_text("path,pid,camid,clothes,split\n"
                   "a/x1.png,42,0,red,train\n"
                   "a/./x2.png,7,1,blue,train\n"
                   "b/y1.png,100,0,u1,query\n"
                   "b/y2.png,100,1,u1,gallery\n"
                   "b/y3.png,100,2,u2,gallery\n")
    ds = create_dataset("custom", root, csv=csv)
    assert [s.pid for s in ds.train] == [1, 0] and [s.path for s in ds.train] == ["a/x1.png", "a/x2.png"]
    assert ds.query[0].clothes_id == ds.gallery[0].clothes_id != ds.gallery[1].clothes_id
    assert [p.name for p in ds.protocols] == ["standard", "sc", "cc"]

    csv.write_text("path,pid,camid,clothes,split\n../outside.png,1,0,a,train\n")
    with pytest.raises(UnsafePathError):
        create_dataset("custom", root, csv=csv)
    csv.write_text("path,pid,clothes,split\na/x1.png,1,a,train\n")
    with pytest.raises(DatasetError, match="camid"):
        create_dataset("custom", root, csv=csv)
    csv.write_text("path,pid,camid,clothes,split\na/x1.png,1,0,a,train\na/missing.png,2,0,a,train\n")
    with pytest.raises(DatasetError, match="missing.png"):
        create_dataset("custom", root, csv=csv)
    assert len(create_dataset("custom", root, csv=csv, strict=False).train) == 1
    with pytest.raises(DatasetError, match="csv"):
        create_dataset("custom", root)


# ---------------------------------------------------------------- registry, images, samples.parquet


def test_registry_names_and_options(root: Path):
    assert dataset_names() == sorted(["prcc", "ltcc", "vcclothes", "vcclothes_sc", "vcclothes_cc", "last",
                                      "deepchange", "ccvid", "synthcc", "custom"])
    with pytest.raises(UnknownNameError, match="ltcc"):
        create_dataset("ltc", root)
    with pytest.raises(DatasetError, match="csv"):
        create_dataset("ltcc", root, csv="x.csv")


def test_check_images_reports_unreadable(root: Path):
    make_ltcc(root)
    assert create_dataset("ltcc", root, check_images=True).num_train_pids == 2
    (root / "LTCC_ReID" / "test" / "011_1_c1_000.png").write_bytes(b"not a png")
    (root / "LTCC_ReID" / "query" / "010_1_c1_000.png").write_bytes(b"")
    ds = create_dataset("ltcc", root)  # parsing alone does not open images
    assert len(ds.gallery) == 4
    with pytest.raises(ImageError) as e:
        create_dataset("ltcc", root, check_images=True)
    msg = str(e.value)
    assert msg.startswith("2 of 10 images") and "011_1_c1_000.png" in msg and "010_1_c1_000.png" in msg


def test_check_images_video_frames(root: Path):
    make_ccvid(root)
    (root / "CCVID" / "session1" / "010_07" / "00000.jpg").write_bytes(b"garbage")
    with pytest.raises(ImageError, match="010_07/00000.jpg"):
        create_dataset("ccvid", root, check_images=True)


def test_samples_parquet_roundtrip(root: Path, tmp_path: Path):
    make_ccvid(root)
    ds = create_dataset("ccvid", root)
    out = write_samples(ds, tmp_path / "out" / "samples.parquet")
    assert out.is_file() and not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    back = read_samples(out)
    assert back == ds.splits
    import pyarrow.parquet as pq

    cols = pq.read_schema(out).names
    assert cols == ["split", "path", "pid", "camid", "clothes_key", "clothes_id", "tracklet", "frames"]
    ds2 = dataset_from_samples(out, root)
    assert ds2.name == "ccvid" and ds2.video and ds2.protocols == ds.protocols
    np.testing.assert_array_equal(ds2.pid2clothes, ds.pid2clothes)
    with pytest.raises(DatasetError, match="not found"):
        read_samples(tmp_path / "nope.parquet")
