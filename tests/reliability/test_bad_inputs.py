"""Bad inputs through the ``dlcr`` command line: one clear line, a non-zero exit, nothing lost.

Each case runs the CLI entry point (``dlcr.cli.main.main``) in-process and checks what a user would
see on stderr: the printed lines plus every log record of level WARNING or above and every Python
warning (in a terminal, Python prints those on stderr; under pytest they are captured elsewhere).
The few cases whose point is a *warning* on an otherwise successful run are run as real processes.
Files written before the failing command are hashed before and compared after.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from relia_util import PYTHON, cli_env, clone, data_sets, snapshot

from dlcr.cli.main import main
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.outputs import MANIFEST_SCHEMA, SKIPPED
from dlcr.generation.stages import GENERATED, JOBS, MASKS
from dlcr.io.images import read_label_map, read_rgb
from dlcr.io.tables import read_table, write_table
from dlcr.lip import clothes_mask

TRAIN_SETS = ["--set", "train.epochs=1", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
              "--set", "sampler.num_instances=2"]


# ----------------------------------------------------------------------------------------- helpers
def cli(argv: list[str], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> tuple[int, list[str]]:
    """Run ``dlcr ARGV`` in-process; returns (exit code, the warning and error lines a user sees).

    Information records (``epoch 1: …``) are what the CLI is meant to print, so they are left out;
    ``dlcr.*`` warnings reach stderr through the CLI's own handler and are counted there once; other
    libraries' warnings are taken from the log capture, whose handler they may bypass on stderr.
    """
    caplog.clear()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    info = {r.getMessage() for r in caplog.records if r.levelno < logging.WARNING and r.name.startswith("dlcr")}
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and ln not in info]
    err += [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and not r.name.startswith("dlcr")]
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # Python's default
    err += [str(w.message) for w in caught if not issubclass(w.category, hidden)]
    return code, err


def one_error(result: tuple[int, list[str]], *needles: str) -> str:
    code, err = result
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0] and 'File "' not in err[0], err[0]  # a message, not a flattened trace
    assert "\x1b" not in err[0], err[0]  # no terminal escape codes
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def run_proc(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "dlcr", *argv], env=cli_env(), capture_output=True, text=True, timeout=120)


def train_files(world: Path) -> list[Path]:
    return sorted((world / "synthcc" / "train").glob("*.png"))


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch run on the originals: ``<out>/run/checkpoints/last.json``."""
    out = tmp_path_factory.mktemp("bad_runs")
    main(["train", *data_sets(world), *TRAIN_SETS, "--set", "sampler.mode=none", "--out", str(out),
          "--name", "run", "--device", "cpu"])
    return out / "run"


def _rewrite_weights(ckpt_dir: Path, change) -> None:
    """Edit the weights of a dlcr checkpoint and re-seal it (size + sha256 in its JSON)."""
    from safetensors.torch import load_file, save

    st = ckpt_dir / "last.safetensors"
    sd = load_file(str(st))
    change(sd)
    data = save(sd, metadata={"format": "dlcr-checkpoint", "role": "weights"})
    st.write_bytes(data)
    meta = json.loads((ckpt_dir / "last.json").read_text())
    meta["files"]["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (ckpt_dir / "last.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------------------- datasets
def test_missing_dataset_root_keeps_the_previous_output(world, tmp_path, capsys, caplog):
    out = tmp_path / "prep"
    assert cli(["data", "prepare", "synthcc", "--root", str(world), "--out", str(out)], capsys, caplog)[0] == 0
    before = snapshot(out)
    one_error(cli(["data", "prepare", "synthcc", "--root", str(tmp_path / "nope"), "--out", str(out)],
                  capsys, caplog), "does not exist")
    assert snapshot(out) == before


def test_wrong_layout_names_the_expected_one(world, tmp_path, capsys, caplog):
    one_error(cli(["data", "inspect", "synthcc", "--root", str(tmp_path)], capsys, caplog),
              "synthcc/ not found", "<root>/synthcc/{train,query,test}/")
    one_error(cli(["data", "inspect", "synthcc", "--root", str(world / "synthcc")], capsys, caplog),
              "pass its parent as the root")


def test_file_names_that_break_the_pattern(world, tmp_path, capsys, caplog):
    w = clone(world, tmp_path / "w")
    shutil.copy(train_files(w)[0], w / "synthcc" / "train" / "holiday_photo.png")
    one_error(cli(["data", "inspect", "synthcc", "--root", str(w)], capsys, caplog),
              "holiday_photo.png", "--no-strict")
    r = run_proc(["data", "inspect", "synthcc", "--root", str(w), "--no-strict"])  # skip + warn
    warn = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 0 and len(warn) == 1 and "skipped 1 file(s)" in warn[0], r.stderr
    assert "skipped 1 file(s) that break the naming pattern" in r.stdout


def test_corrupt_truncated_and_zero_byte_images(world, trained, tmp_path, capsys, caplog):
    w = clone(world, tmp_path / "w")
    files = train_files(w)
    files[0].write_bytes(b"")
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    files[2].write_bytes(os.urandom(300))
    line = one_error(cli(["data", "inspect", "synthcc", "--root", str(w), "--check"], capsys, caplog),
                     "3 of", "unreadable")
    for f in files[:3]:
        assert f.name in line
    one_error(cli(["generate", "masks", *data_sets(w), "--work", str(tmp_path / "work")], capsys, caplog),
              files[0].name)

    # A truncated image met while training, read by a DataLoader *worker* process, and after a
    # completed epoch: one line (not the worker's traceback) and the epoch-0 checkpoint untouched.
    w2 = clone(world, tmp_path / "w2")
    t = train_files(w2)[1]
    t.write_bytes(t.read_bytes()[:200])
    run = clone(trained, tmp_path / "runs" / "run")
    before = snapshot(run / "checkpoints")
    argv = ["train", *data_sets(w2), *TRAIN_SETS, "--set", "train.epochs=2", "--set", "data.workers=2",
            "--set", "sampler.mode=none", "--out", str(tmp_path / "runs"), "--name", "run", "--resume",
            "--device", "cpu"]
    one_error(cli(argv, capsys, caplog), "cannot decode image", t.name, "truncated")
    assert snapshot(run / "checkpoints") == before


def test_grayscale_rgba_palette_and_16_bit_images_just_work(world, tmp_path, capsys, caplog):
    w = clone(world, tmp_path / "w")
    files = train_files(w)[:4]
    rgb = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    Image.fromarray(rgb[0]).convert("L").save(files[0])
    rgba = np.dstack([rgb[1], np.full(rgb[1].shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(files[1])
    Image.fromarray(rgb[2]).convert("P", palette=Image.Palette.ADAPTIVE).save(files[2])
    Image.fromarray(np.asarray(Image.fromarray(rgb[3]).convert("L")).astype(np.uint16) * 257).save(files[3])
    assert [Image.open(f).mode for f in files] == ["L", "RGBA", "P", "I;16"]

    assert cli(["data", "inspect", "synthcc", "--root", str(w), "--check"], capsys, caplog) == (0, [])
    work = tmp_path / "work"
    code, err = cli(["generate", "all", *data_sets(w), "--set", "generate.k=1", "--work", str(work),
                     "--no-queries"], capsys, caplog)
    assert (code, err) == (0, [])
    rows = {r["source"]: r for r in read_table(work / GENERATED / MANIFEST)}
    for f, src_rgb in zip(files, rgb, strict=True):
        rel = f.relative_to(w).as_posix()
        out = read_rgb(work / GENERATED / rows[rel]["file"])
        src = read_rgb(f)  # the converted source (RGBA opaque -> its RGB; 16-bit -> 8-bit gray)
        mask = clothes_mask(read_label_map(work / MASKS / (rel[:-4] + ".png")))
        assert out.shape == src_rgb.shape and mask.any()
        assert np.array_equal(out[~mask], src[~mask]) and not np.array_equal(out[mask], src[mask])
    assert np.array_equal(read_rgb(files[1]), rgb[1])  # opaque RGBA keeps its colours exactly


def test_label_map_of_another_size_than_its_image(world, work, tmp_path, capsys, caplog):
    w = clone(world, tmp_path / "w")
    wk = clone(work, tmp_path / "work")
    rel = train_files(w)[0].relative_to(w).as_posix()
    gt = w / "synthcc" / "masks" / "train" / Path(rel).name
    Image.open(gt).resize((16, 32), Image.Resampling.NEAREST).save(gt)
    (wk / MASKS / (rel[:-4] + ".png")).unlink()  # so that this one is parsed again
    before = snapshot(wk)
    one_error(cli(["generate", "masks", *data_sets(w), "--work", str(wk)], capsys, caplog),
              "is 16x32 but image", Path(rel).name)
    assert snapshot(wk) == before


def test_image_with_an_empty_clothes_mask_is_skipped_with_one_warning(world, work, tmp_path):
    wk = clone(work, tmp_path / "work")
    shutil.rmtree(wk / GENERATED)
    jobs = read_table(wk / JOBS)
    src = jobs[0]["source"]
    lp = wk / MASKS / (src[:-4] + ".png")
    labels = read_label_map(lp)
    labels[clothes_mask(labels)] = 0  # parsed as a person without clothes pixels
    Image.fromarray(labels, "L").save(lp)
    r = run_proc(["-q", "generate", "inpaint", "--set", f"data.root={world}", "--work", str(wk)])
    warn = [ln for ln in r.stderr.splitlines() if ln.strip()]  # -q: warnings and errors only
    assert r.returncode == 0 and len(warn) == 1 and "clothes mask is empty" in warn[0], r.stderr
    skipped = {j["job_id"] for j in jobs if j["source"] == src}
    assert f"skipped (empty mask) {len(skipped)}" in r.stdout
    assert {x["job_id"] for x in read_table(wk / GENERATED / SKIPPED)} == skipped
    assert len(read_table(wk / GENERATED / MANIFEST)) == len(jobs) - len(skipped)


def _custom_csv(world: Path, tmp_path: Path, rows: list[str]) -> Path:
    """A custom-dataset CSV over the world's first training images ({0}, {1} ... in ``rows``)."""
    names = [f.relative_to(world).as_posix() for f in train_files(world)[:4]]
    csv = tmp_path / "d.csv"
    csv.write_text("path,pid,camid,clothes,split\n" + "".join(r.format(*names) + "\n" for r in rows))
    return csv


def test_custom_csv_split_names_are_case_insensitive(world, tmp_path):
    from dlcr.data.datasets import create_dataset

    csv = _custom_csv(world, tmp_path, ["{0},1,0,a,Train", "{1},2,0,a,train", "{2},1,1,b,QUERY", "{3},1,2,b,Gallery"])
    ds = create_dataset("custom", world, csv=csv)
    assert sorted(ds.splits) == ["gallery", "query", "train"] and len(ds.train) == 2  # not a 4th split "Train"
    assert [p.name for p in ds.protocols] == ["standard", "sc", "cc"]


def test_custom_csv_listing_an_image_twice_is_one_error(world, tmp_path, capsys, caplog):
    csv = _custom_csv(world, tmp_path, ["{0},1,0,a,train", "{1},2,0,a,train", "{0},1,0,a,train"])
    one_error(cli(["data", "inspect", "custom", "--root", str(world), "--csv", str(csv)], capsys, caplog),
              "d.csv:4", "already listed on line 2")


def test_an_output_on_a_pseudo_file_system_cannot_be_written(world, capsys, caplog):
    if not Path("/proc/self/mounts").is_file():
        pytest.skip("no /proc here")
    msg = one_error(cli(["data", "prepare", "synthcc", "--root", str(world), "--out", "/proc/dlcr-out"], capsys,
                        caplog), "/proc/dlcr-out", "cannot be written", "proc")
    assert "No such file or directory" not in msg


# ----------------------------------------------------------------------------------------- names, config
def test_unknown_dataset_backend_scheduler_and_model_names(world, work, tmp_path, capsys, caplog):
    wk = clone(work, tmp_path / "work")
    before = snapshot(wk)
    one_error(cli(["data", "inspect", "synthc", "--root", str(world)], capsys, caplog),
              "unknown dataset 'synthc'", "did you mean 'synthcc'")
    gen = ["generate", "inpaint", *data_sets(world), "--work", str(wk)]
    one_error(cli([*gen, "--set", "generate.backend=recolour"], capsys, caplog),
              "unknown inpainter 'recolour'", "did you mean 'recolor'")
    one_error(cli([*gen, "--set", "generate.backend=tiny", "--set", "generate.scheduler=dimm"], capsys, caplog),
              "unknown scheduler 'dimm'", "did you mean 'ddim'")
    one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--set", "sampler.mode=none", "--set",
                   "model.name=small_resnt", "--out", str(tmp_path / "runs")], capsys, caplog),
              "unknown model 'small_resnt'", "did you mean 'small_resnet'")
    assert snapshot(wk) == before


def test_misspelt_config_key_and_wrong_type(world, tmp_path, capsys, caplog):
    argv = ["train", *data_sets(world), "--out", str(tmp_path)]
    one_error(cli([*argv, "--set", "train.epoch=3"], capsys, caplog),
              "unknown config key 'train.epoch'", "did you mean 'train.epochs'")
    one_error(cli([*argv, "--set", "train.epochs=three"], capsys, caplog),
              "config key 'train.epochs' expects int", "'three'")
    one_error(cli([*argv, "--config", "ltcc-typo"], capsys, caplog), "config 'ltcc-typo' not found")
    assert not list(tmp_path.iterdir())


def test_unwritable_output_folder(world, work, trained, tmp_path, capsys, caplog):
    """As root, chmod does not stop writes (root bypasses permission bits) and a read-only bind mount
    needs privileges a test does not have, so the blocked folder sits under a regular *file*: every
    user gets ENOTDIR there. Without root, a read-only folder is checked too."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    bad = blocker / "sub"
    wk = clone(work, tmp_path / "work")
    before = snapshot(wk)
    for argv in (["data", "prepare", "synthcc", "--root", str(world), "--out", str(bad)],
                 ["data", "synth", "--out", str(bad), "--ids", "2", "--size", "64x32"],
                 ["generate", "masks", *data_sets(world), "--work", str(bad)],
                 ["train", *data_sets(world), *TRAIN_SETS, "--set", "sampler.mode=none", "--out", str(bad)],
                 ["train", *data_sets(world), *TRAIN_SETS, "--work", str(wk), "--out", str(bad)],
                 ["evaluate", *data_sets(world), "--checkpoint", str(trained / "checkpoints" / "last.json"),
                  "--out", str(bad), "--device", "cpu"]):
        one_error(cli(argv, capsys, caplog), "Not a directory", str(blocker))
    assert blocker.read_text() == "not a folder\n" and snapshot(wk) == before
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            one_error(cli(["data", "prepare", "synthcc", "--root", str(world), "--out", str(ro / "x")],
                          capsys, caplog), "ermission denied")
        finally:
            ro.chmod(0o700)


def test_damaged_tables(world, work, tmp_path, capsys, caplog):
    wk = clone(work, tmp_path / "work")
    (wk / JOBS).write_bytes(b"")
    one_error(cli(["generate", "inpaint", *data_sets(world), "--work", str(wk)], capsys, caplog),
              "cannot read table", "jobs.parquet")
    manifest = wk / GENERATED / MANIFEST
    manifest.write_bytes(manifest.read_bytes()[:100])
    one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--work", str(wk), "--out", str(tmp_path / "r")],
                  capsys, caplog), "cannot read table", "manifest.parquet")


# ----------------------------------------------------------------------------------------- evaluation
def test_nan_features_are_refused_and_keep_previous_metrics(world, trained, tmp_path, capsys, caplog):
    ck = clone(trained / "checkpoints", tmp_path / "ck")
    _rewrite_weights(ck, lambda sd: sd["model.neck.running_var"].fill_(float("nan")))
    out = tmp_path / "eval"
    ev = ["evaluate", *data_sets(world), "--out", str(out), "--device", "cpu"]
    assert cli([*ev, "--checkpoint", str(trained / "checkpoints" / "last.json")], capsys, caplog)[0] == 0
    before = snapshot(out)
    one_error(cli([*ev, "--checkpoint", str(ck / "last.json")], capsys, caplog), "NaN or infinite features")
    assert snapshot(out) == before


def test_queries_without_ground_truth(world, trained, tmp_path, capsys, caplog):
    w = clone(world, tmp_path / "w")
    queries = sorted((w / "synthcc" / "query").glob("*.png"))
    first = queries[0].name.split("_")[0]
    mine = [q for q in queries if q.name.split("_")[0] == first]
    for q in mine:  # a person the gallery does not contain
        q.rename(q.with_name("999_" + q.name.split("_", 1)[1]))
    ev = ["evaluate", *data_sets(w), "--checkpoint", str(trained / "checkpoints" / "last.json"), "--device", "cpu"]
    code, err = cli([*ev, "--out", str(tmp_path / "e1")], capsys, caplog)
    assert code == 0 and len(err) == 1 and err[0].startswith("warning: queries without a valid match"), err
    assert f"standard {len(mine)}/{len(queries)}" in err[0]
    m = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert m["standard"]["num_skipped"] == len(mine) and m["standard"]["num_queries"] == len(queries) - len(mine)
    for q in (w / "synthcc" / "query").glob("*.png"):
        if not q.name.startswith("999_"):
            q.rename(q.with_name("999_" + q.name.split("_", 1)[1]))
    one_error(cli([*ev, "--out", str(tmp_path / "e2")], capsys, caplog), "no query has a good match")
    assert not (tmp_path / "e2").exists()


# ----------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_of_another_architecture(world, trained, tmp_path, capsys, caplog):
    run = clone(trained, tmp_path / "runs" / "run")
    before = snapshot(run)
    one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--set", "train.epochs=2", "--set", "sampler.mode=none",
                   "--set", "model.name=bot_resnet50", "--out", str(tmp_path / "runs"), "--name", "run", "--resume",
                   "--device", "cpu"], capsys, caplog),
              "checkpoint is for architecture 'small_resnet', model is 'bot_resnet50'")
    assert snapshot(run) == before
    ck = run / "checkpoints"
    _rewrite_weights(ck, lambda sd: sd.update({"model.classifier.weight": torch.zeros(7, 3)}))
    one_error(cli(["evaluate", *data_sets(world), "--checkpoint", str(ck / "last.json"), "--device", "cpu"],
                  capsys, caplog), "shape mismatch at 'model.classifier.weight'")


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_checkpoints_from_untrusted_sources_are_refused(world, tmp_path, capsys, caplog):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pth"
    torch.save({"state_dict": {"w": _Payload(marker)}}, evil)
    one_error(cli(["evaluate", *data_sets(world), "--checkpoint", str(evil), "--device", "cpu"], capsys, caplog),
              "refusing to load pickle file", "allow_pickle=True")
    one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--set", "sampler.mode=none",
                   "--set", f"model.pretrained={evil}", "--out", str(tmp_path / "runs")], capsys, caplog),
              "weights-only", str(evil), "holds more than plain tensors", "GLOBAL io.open")
    assert not marker.exists()


def test_generated_paths_that_leave_the_work_folder_are_refused(world, work, tmp_path, capsys, caplog):
    """A tampered (or downloaded) manifest must not make training read files outside the work folder."""
    import pyarrow as pa

    for bad, needle in (("/etc/hostname", "is absolute"), ("../../../../../etc/hostname", "leaves the root")):
        wk = clone(work, tmp_path / f"work{len(needle)}")
        rows = read_table(wk / GENERATED / MANIFEST)
        rows[0]["file"] = bad
        write_table(wk / GENERATED / MANIFEST, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
        one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--work", str(wk), "--out", str(tmp_path / "r")],
                      capsys, caplog), needle)


def test_a_relative_work_folder_trains(world, work, tmp_path, capsys, caplog, monkeypatch):
    """The default --work is relative (out/<dataset>): generated files must not be looked up under the
    dataset root (they were, before add_generated resolved them)."""
    clone(work, tmp_path / "out" / "synthcc")
    monkeypatch.chdir(tmp_path)
    code, err = cli(["train", *data_sets(world), *TRAIN_SETS, "--out", "runs", "--device", "cpu"], capsys, caplog)
    assert (code, err) == (0, []) and (tmp_path / "runs" / "default" / "checkpoints" / "last.json").is_file()


def test_a_run_killed_inside_a_checkpoint_save_is_not_overwritten_by_a_fresh_run(world, trained, tmp_path, capsys,
                                                                                  caplog):
    """After a kill inside the save only ``last.prev`` is complete; training again without --resume must
    refuse (as it does when last.json exists) instead of starting over and discarding it."""
    from dlcr.engine.checkpoint import _keep_previous
    from dlcr.engine.checkpoint_files import latest_checkpoint

    run = clone(trained, tmp_path / "runs" / "run")
    ck = run / "checkpoints"
    _keep_previous(ck, "last")
    (ck / "last.json").unlink()  # the state a SIGKILL inside save_checkpoint leaves
    assert latest_checkpoint(ck) == ck / "last.prev.json"
    before = snapshot(run)
    one_error(cli(["train", *data_sets(world), *TRAIN_SETS, "--set", "sampler.mode=none", "--out",
                   str(tmp_path / "runs"), "--name", "run", "--device", "cpu"], capsys, caplog),
              "already holds a run (last.prev.json)", "--resume")
    assert snapshot(run) == before
