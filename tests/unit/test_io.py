import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.errors import DlcrError, ImageError, UnsafePathError
from dlcr.io.atomic import atomic_write, atomic_write_json, remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb, write_png
from dlcr.io.paths import safe_join
from dlcr.io.tables import read_table, write_table
from dlcr.registry import Registry
from dlcr.types import Outfit, Sample


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    with pytest.raises(RuntimeError), atomic_write(p, "w") as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert p.read_text().strip().startswith("{")
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]  # no temp left behind


def test_remove_stale_temps(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.png.abc.tmp").write_bytes(b"1")
    (tmp_path / "keep.png").write_bytes(b"1")
    assert remove_stale_temps(tmp_path) == 1
    assert (tmp_path / "keep.png").exists()


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd"])
def test_safe_join_refuses_escape(tmp_path: Path, rel):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, rel)


def test_safe_join_refuses_symlink_escape(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    with pytest.raises(UnsafePathError):
        safe_join(root, "link/x")
    assert safe_join(root, "a/b.png") == (root / "a/b.png").resolve()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "RGB"])
def test_read_rgb_converts_every_mode(tmp_path: Path, mode):
    arr = (np.arange(6 * 4 * 3) % 251).astype(np.uint8).reshape(6, 4, 3)
    im = Image.fromarray(arr)
    if mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        im = im.convert(mode)
    p = tmp_path / "x.png"
    im.save(p)
    out = read_rgb(p)
    assert out.shape == (6, 4, 3) and out.dtype == np.uint8
    if mode == "I;16":
        np.testing.assert_array_equal(out[..., 0], arr[..., 0])


def test_read_rgb_errors(tmp_path: Path):
    with pytest.raises(ImageError, match="not found"):
        read_rgb(tmp_path / "nope.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match="0 bytes"):
        read_rgb(tmp_path / "zero.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot decode"):
        read_rgb(tmp_path / "junk.png")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(good, quality=95)
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        read_rgb(tmp_path / "trunc.jpg")


def test_png_roundtrip_and_label_map(tmp_path: Path):
    lab = np.random.default_rng(0).integers(0, 20, (5, 3)).astype(np.uint8)
    write_png(tmp_path / "m" / "l.png", lab)
    np.testing.assert_array_equal(read_label_map(tmp_path / "m" / "l.png"), lab)
    write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ImageError, match="single-channel"):
        read_label_map(tmp_path / "rgb.png")


def test_table_roundtrip(tmp_path: Path):
    rows = [Sample("a/b.png", 1, 0, 2, "train", "001_1"), Sample("c.png", 2, 1, 3, "query", "002_1")]
    write_table(tmp_path / "s.parquet", rows)
    back = read_table(tmp_path / "s.parquet")
    assert back[0]["path"] == "a/b.png" and back[1]["split"] == "query" and back[0]["frames"] == []


def test_registry_helpful_error():
    reg: Registry = Registry("thing")

    @reg.register("alpha")
    def alpha():
        return 1

    assert reg.create("ALPHA") == 1
    with pytest.raises(DlcrError, match="did you mean 'alpha'") as e:
        reg.get("alpah")
    assert "known: alpha" in str(e.value)
    with pytest.raises(ValueError):
        reg.register("alpha")(alpha)


def test_outfit_prompt():
    assert Outfit("k", "red t-shirt", "blue jeans", "white shoes").prompt == (
        "a person wearing red t-shirt, blue jeans, white shoes")
    assert Outfit("k", "", "", "").prompt == "a person"


def test_safe_join_lexical_follows_links_but_refuses_escapes(tmp_path: Path):
    from dlcr.errors import UnsafePathError
    from dlcr.io.paths import safe_join

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "root", "link/a.png")  # resolving: the link leaves the root
    assert safe_join(tmp_path / "root", "link/a.png", lexical=True) == tmp_path / "root" / "link" / "a.png"
    for bad in ("../x.png", "a/../../x.png", "/etc/passwd"):
        with pytest.raises(UnsafePathError):
            safe_join(tmp_path / "root", bad, lexical=True)


def test_registry_create_names_unknown_options():
    from dlcr.errors import ConfigError

    reg: Registry = Registry("widget")

    @reg.register("box")
    def _box(size: int = 1) -> int:
        if size < 0:
            raise ValueError("negative size")
        return size

    assert reg.create("box", size=3) == 3
    with pytest.raises(ConfigError, match=r"widget 'box': .*colour.*its options are: size"):
        reg.create("box", colour="red")
    with pytest.raises(ValueError, match="negative size"):  # the factory's own errors pass through
        reg.create("box", size=-1)


def test_registry_lazy_entries_import_on_use_and_expose_the_real_signature():
    import inspect
    import sys

    from dlcr.errors import ConfigError

    reg: Registry = Registry("thing")
    reg.register_lazy("frac", "fractions:Fraction")
    reg.register_lazy("ghost", "dlcr_no_such_module_xyz:Thing")  # never imported unless used
    assert "dlcr_no_such_module_xyz" not in sys.modules
    assert list(inspect.signature(reg.get("frac")).parameters)[:2] == ["numerator", "denominator"]
    assert reg.create("frac", 1, denominator=4) == 0.25
    with pytest.raises(ConfigError, match="thing 'frac'.*its options are: numerator, denominator"):
        reg.create("frac", 1, colour=2)


def test_remove_stale_temps_keeps_young_files_when_asked(tmp_path):
    import os
    import time

    old, young = tmp_path / "a" / ".x.png.tmp", tmp_path / ".y.png.tmp"
    old.parent.mkdir()
    old.write_bytes(b"1")
    young.write_bytes(b"2")
    past = time.time() - 120
    os.utime(old, (past, past))
    assert remove_stale_temps(tmp_path, older_than=60.0) == 1
    assert not old.exists() and young.exists()
    assert remove_stale_temps(tmp_path / "missing") == 0
    assert remove_stale_temps(tmp_path) == 1 and not young.exists()


def test_first_line_of_third_party_errors():
    from dlcr.errors import first_line

    assert first_line(ValueError("bad value\n  Traceback ...\n  more")) == "bad value"
    assert first_line(ValueError("  \n")) == "ValueError"  # empty messages name the error type
    assert first_line(OSError()) == "OSError"


def test_local_model_missing_tells_folders_from_hub_ids(tmp_path):
    from dlcr.io.paths import local_model_missing

    assert not local_model_missing("org/model") and not local_model_missing("model")  # hub ids
    assert local_model_missing(str(tmp_path / "nope")) and local_model_missing("./nope")
    assert local_model_missing("a/b/c") and local_model_missing("~/no-such-model-dlcr")
    assert not local_model_missing(str(tmp_path))  # an existing folder is fine


def test_did_you_mean_hint():
    from dlcr.errors import did_you_mean

    assert did_you_mean("recolour", ["recolor", "tiny"]) == " (did you mean 'recolor'?)"
    assert did_you_mean("zzz", ["recolor", "tiny"]) == ""


def test_atomic_writes_follow_the_umask_like_open(tmp_path: Path):
    """mkstemp creates 0600 files; a shared work folder must stay readable as the umask allows."""
    import os

    from dlcr.io.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        with open(tmp_path / "b.bin", "wb") as fh:
            fh.write(b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "c.bin", b"x")
    finally:
        os.umask(old)
    mode = lambda p: (tmp_path / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("a.bin") == mode("b.bin") == 0o644
    assert mode("c.bin") == 0o600
