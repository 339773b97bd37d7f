"""``dlcr generate import-released`` from a local folder and from a hub dataset, without network.

A local folder laid out as the hub repository is assumed to be (one top-level folder per benchmark in
the released layout, plus a README) stands in for the hub: ``huggingface_hub.snapshot_download`` is
replaced by a fake that checks its arguments and, like the real client, copies only the files the
patterns allow into a cache whose snapshot files are relative links into ``blobs/``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_run import run_cli
from dlcr.generation.outputs import read_manifest
from dlcr.io.images import read_rgb, write_png

H, W, K, N = 32, 16, 2, 6
REPO = "some-org/DLCR"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthcc world and, beside it, a folder laid out as the hub dataset: ``SynthCC/`` with strips
    of the first N training images (K variants) and one strip of no training image, ``Other/`` with a
    strip of another benchmark, and a README at the top."""
    from dlcr.data.datasets import create_dataset
    from dlcr.synth import render_world

    root = tmp_path_factory.mktemp("released_hub")
    render_world(root / "w", ids=3, seed=1, height=H, width=W)
    ds = create_dataset("synthcc", root / "w")
    hub = root / "hub"
    chosen = sorted(ds.train, key=lambda s: s.path)[:N]
    stems = [s.path.removesuffix(".png").replace("synthcc/", "", 1) for s in chosen]  # train/<name>
    for i, stem in enumerate([*stems, "train/999_1_c1_000"]):
        tiles = [np.full((H, W, 3), (10 * i, 100 + 60 * v, 7), np.uint8) for v in range(K)]
        write_png(hub / "SynthCC" / f"{stem}.png", np.concatenate(tiles, axis=1))
        (hub / "SynthCC" / f"{stem}.txt").write_text(f"red shirt| blue jeans| shoes {i}\ngreen coat| black skirt|\n")
    write_png(hub / "Other" / "bounding_box_train" / "0001_c1.png", np.zeros((H, 2 * W, 3), np.uint8))
    (hub / "Other" / "bounding_box_train" / "0001_c1.txt").write_text("a| b| c\nd| e| f\n")
    (hub / "README.md").write_text("generated data\n")
    return {"root": root / "w", "hub": hub, "chosen": chosen}


class FakeHub:
    """``snapshot_download`` over a local folder: records its calls; a snapshot already in the cache is
    what ``local_files_only`` finds, else that raises as the client does; ``fail`` is raised instead."""

    def __init__(self, src: Path, cache: Path):
        self.src, self.cache, self.calls, self.fail = src, cache, [], None

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.src).as_posix() for p in self.src.rglob("*") if p.is_file())

    def __call__(self, repo_id, *, repo_type=None, revision=None, allow_patterns=None, local_files_only=False,
                 cache_dir=None, **kw):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                           "allow_patterns": allow_patterns, "local_files_only": local_files_only, **kw})
        assert repo_type == "dataset" and "trust_remote_code" not in kw
        repo = self.cache / f"datasets--{repo_id.replace('/', '--')}"
        snap = repo / "snapshots" / hashlib.sha1(str(revision).encode()).hexdigest()
        if self.fail is not None:
            raise self.fail
        if local_files_only:
            if not snap.is_dir():
                raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder")
            return str(snap)
        for rel in self.files():
            if not any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                continue
            data = (self.src / rel).read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snap / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(os.path.relpath(blob, link.parent), link)
        return str(snap)

    def tree(self, repo_id, *, repo_type=None, revision=None, **kw):
        """``get_cached_repo_tree``: the repository's file listing (the real one is cached by a download)."""
        from types import SimpleNamespace

        return [SimpleNamespace(path=p) for p in self.files()]


@pytest.fixture
def hub(world, tmp_path, monkeypatch) -> FakeHub:
    import huggingface_hub

    fake = FakeHub(world["hub"], tmp_path / "hf_cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(huggingface_hub, "get_cached_repo_tree", fake.tree)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the test session sets it; the fake stands in for the hub
    return fake


def _sets(world: dict) -> list[str]:
    return ["--set", f"data.root={world['root']}", "--set", f"data.height={H}", "--set", f"data.width={W}"]


def _cmd(world: dict, work: Path, *args: str) -> list[str]:
    return ["generate", "import-released", *_sets(world), "--work", str(work), *args]


def _one_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_hub_import_fetches_one_benchmark_and_matches_the_local_import(world, hub, tmp_path, capsys):
    code, out, err = run_cli(_cmd(world, tmp_path / "w_hub", "--hub", REPO, "--benchmark", "SynthCC",
                                  "--revision", "v1.0"), capsys)
    assert code == 0, err
    assert f"{N * K} variants of {N} training images" in out
    assert "1 released strip(s) match no sample" in err  # the strip of no training image is left out
    (call,) = hub.calls
    assert call["repo_id"] == REPO and call["revision"] == "v1.0" and call["allow_patterns"] == ["SynthCC/**"]
    assert call["local_files_only"] is False
    cached = sorted(p.relative_to(hub.cache).as_posix().split("/", 3)[-1] for p in hub.cache.rglob("*")
                    if p.is_symlink())
    assert cached and all(c.startswith("SynthCC/") for c in cached)  # nothing of Other/ nor the README
    assert len(cached) == 2 * (N + 1)

    code, out, err = run_cli(_cmd(world, tmp_path / "w_local", "--from", str(world["hub"] / "SynthCC")), capsys)
    assert code == 0, err
    from_hub, from_folder = read_manifest(tmp_path / "w_hub" / "generated"), read_manifest(tmp_path / "w_local" / "generated")
    assert from_hub == from_folder and len(from_hub) == N * K
    by_path = {s.path: s for s in world["chosen"]}
    assert {r.source for r in from_hub} == set(by_path)  # matched to the dataset's own paths (synthcc/train/...)
    for r in from_hub:
        assert r.pid == by_path[r.source].pid and r.backend == "released"
        tile = read_rgb(tmp_path / "w_hub" / "generated" / r.file)
        assert tile.shape == (H, W, 3) and int(tile[0, 0, 1]) == 100 + 60 * r.variant
    assert {r.prompt for r in from_hub if r.variant == 1} == {"a person wearing green coat, black skirt"}


def test_offline_uses_the_cache_and_refuses_without_it(world, hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ("--hub", REPO, "--benchmark", "SynthCC")
    line = _one_error(*run_cli(_cmd(world, tmp_path / "w0", *args), capsys)[::2])
    assert "no complete cached copy" in line and "HF_HUB_OFFLINE" in line
    assert hub.calls[-1]["local_files_only"] is True and not (tmp_path / "w0").exists()

    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert run_cli(_cmd(world, tmp_path / "w1", *args), capsys)[0] == 0  # online: fills the cache
    code, _, err = run_cli(_cmd(world, tmp_path / "w2", *args, "--offline"), capsys)
    assert code == 0, err
    assert hub.calls[-1]["local_files_only"] is True
    assert read_manifest(tmp_path / "w2" / "generated") == read_manifest(tmp_path / "w1" / "generated")


def test_unknown_benchmark_and_bad_names_are_one_error_line_and_write_nothing(world, hub, tmp_path, capsys):
    work = tmp_path / "w"
    line = _one_error(*run_cli(_cmd(world, work, "--hub", REPO, "--benchmark", "synthcc"), capsys)[::2])
    assert "has no folder 'synthcc'" in line and "did you mean 'SynthCC'" in line and "Other" in line
    assert not work.exists()
    n = len(hub.calls)
    for bad in ("../SynthCC", "Synth*", "/abs", ""):
        line = _one_error(*run_cli(_cmd(world, work, "--hub", REPO, "--benchmark", bad), capsys)[::2])
        assert "--benchmark" in line, line
    assert len(hub.calls) == n and not work.exists()  # refused before the hub was asked


@pytest.mark.parametrize("failure", ["connection", "local-entry"])
def test_network_failure_is_one_error_line_and_writes_nothing(world, hub, tmp_path, capsys, failure):
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub.fail = (ConnectionRefusedError(111, "Connection refused") if failure == "connection" else
                LocalEntryNotFoundError("Got: ConnectError: [Errno -3] Temporary failure in name resolution\n"
                                        "An error happened while trying to locate the files on the Hub"))
    work = tmp_path / "w"
    line = _one_error(*run_cli(_cmd(world, work, "--hub", REPO, "--benchmark", "SynthCC"), capsys)[::2])
    assert line.startswith("error: cannot download 'SynthCC' of hub dataset some-org/DLCR")
    assert not work.exists() and not hub.cache.exists()


def test_from_through_the_cli_and_a_work_folder_of_other_images(world, hub, tmp_path, capsys):
    work = tmp_path / "w"
    assert run_cli(_cmd(world, work, "--hub", REPO, "--benchmark", "SynthCC"), capsys)[0] == 0
    before = read_manifest(work / "generated")
    # the same images from a local folder are another source: refused, then replaced with --overwrite
    local = tmp_path / "copy" / "SynthCC"  # the model column names the folder: released:SynthCC
    shutil.copytree(world["hub"] / "SynthCC", local)
    line = _one_error(*run_cli(_cmd(world, work, "--from", str(local)), capsys)[::2])
    assert "were made with other settings" in line and "--overwrite" in line
    assert read_manifest(work / "generated") == before
    code, out, err = run_cli(_cmd(world, work, "--from", str(local), "--overwrite"), capsys)
    assert code == 0, err
    assert read_manifest(work / "generated") == before
    # the same source again resumes (nothing to overwrite)
    assert run_cli(_cmd(world, work, "--from", str(local)), capsys)[0] == 0

    for args, msg in ((("--from", str(tmp_path / "missing")), "released data folder not found"),
                      (("--from", str(local), "--hub", REPO), "give one source"),
                      ((), "give one source"),
                      (("--from", str(local), "--benchmark", "SynthCC"), "go with --hub"),
                      (("--hub", REPO), "--hub needs --benchmark"),
                      (("--from", str(world["hub"] / "Other")), "none of the 1 released strips")):
        line = _one_error(*run_cli(_cmd(world, tmp_path / "w_bad", *args), capsys)[::2])
        assert msg in line, (args, line)
    assert not (tmp_path / "w_bad").exists()


def test_strips_match_a_training_image_by_their_longest_unambiguous_trailing_path():
    from dlcr.generation.released_format import match_samples
    from dlcr.types import Sample

    paths = ["prcc/rgb/train/001/A_1.jpg", "prcc/rgb/train/002/A_1.jpg", "prcc/rgb/train/002/B_2.jpg",
             "prcc/rgb/train/003/C_3.jpg"]
    samples = [Sample(path=p, pid=i, camid=0, clothes_id=i, split="train") for i, p in enumerate(paths)]
    got = match_samples(["PRCC/train/001/A_1.png",  # 001/A_1 names one image
                         "elsewhere/A_1.png",  # A_1 names two: left out
                         "prcc/rgb/train/002/A_1.png",  # the whole path
                         "x/C_3.png", "y/C_3.png"], samples)  # two strips claim one image: both left out
    assert {r: s.path for r, s in got.items()} == {"PRCC/train/001/A_1.png": paths[0],
                                                   "prcc/rgb/train/002/A_1.png": paths[1]}
