"""``dlcr report`` on a real work folder (``dlcr generate all``) and a real run folder (``dlcr train`` +
``dlcr evaluate``) of a tiny synthcc world, through the real entry point; plus the error line for a
folder of no known kind."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.io.tables import read_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fake_demo_module():
    import fake_demo

    return fake_demo


def run_cli(*argv: str, capsys: pytest.CaptureFixture | None = None) -> tuple[int, str, str]:
    from dlcr.cli.main import main

    code = 0
    try:
        main([*map(str, argv)])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-identity world, its work folder (offline backends, K=2) and a 1-epoch run evaluated once."""
    from dlcr.synth.writer import render_world

    base = tmp_path_factory.mktemp("report_folders")
    data, work, runs = base / "data", base / "work", base / "runs"
    render_world(data, ids=4, seed=0, height=32, width=16)
    gen = ["-c", "synthcc", "--set", f"data.root={data}", "--set", "generate.parser=synthcc",
           "--set", "generate.backend=recolor", "--set", "generate.k=2", "--set", "generate.query_variants=2"]
    assert run_cli("generate", "all", *gen, "--work", work)[0] == 0
    common = ["-c", "synthcc", "--set", f"data.root={data}", "--set", "data.height=32", "--set", "data.width=16",
              "--set", "data.workers=0", "--work", work]
    code, _, _ = run_cli("train", *common, "--set", "train.epochs=1", "--set", "train.eval_every=1",
                         "--set", "sampler.batch_size=4", "--set", "sampler.num_instances=2",
                         "--set", "sampler.mode=none", "--name", "r", "--out", runs)
    assert code == 0
    assert run_cli("evaluate", *common, "--checkpoint", runs / "r" / "checkpoints" / "last.json")[0] == 0
    return {"base": base, "data": data, "work": work, "run": runs / "r"}


def section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def notes(text: str) -> list[str]:
    import html as h

    return [h.unescape(n) for n in re.findall(r'<p class="note">(.*?)</p>', text, flags=re.S)]


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _copy(src: Path, dst: Path, *keep: str) -> Path:
    """``dst`` holding only the entries ``keep`` of ``src`` (checkpoint weights left out: never read here)."""
    dst.mkdir(parents=True)
    for name in keep:
        s = src / name
        if s.is_dir():
            shutil.copytree(s, dst / name, ignore=shutil.ignore_patterns("*.safetensors"))
        elif s.is_file():
            shutil.copy2(s, dst / name)
    return dst


# --------------------------------------------------------------------------------------------
# Work folder
# --------------------------------------------------------------------------------------------


def test_work_folder_report_shows_counts_settings_masks_and_variants(folders, capsys):
    work, data = folders["work"], folders["data"]
    code, out, err = run_cli("report", work, "--root", data, capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[:2] == [f"report: {work / 'report.html'}",
                                    "work folder: built contents, settings, masks, generation"]
    html = (work / "report.html").read_text()
    assert 'class="note"' not in html and "mediapipe" not in html

    # Counts equal the rows of every stage's table.
    counts = dict(re.findall(r'<td data-count="([^"]+)">([^<]+)</td>', section(html, "contents")))
    expected = {"masks": len(read_table(work / "masks" / "masks.parquet")),
                "captions.parquet": len(read_table(work / "captions.parquet")),
                "outfits.parquet": len(read_table(work / "outfits.parquet")),
                "jobs.parquet": len(read_table(work / "jobs.parquet")),
                "generated": len(read_table(work / "generated" / "manifest.parquet")),
                "query_jobs.parquet": len(read_table(work / "query_jobs.parquet")),
                "query_generated": len(read_table(work / "query_generated" / "manifest.parquet"))}
    assert counts == {k: str(v) for k, v in expected.items()}
    assert all(v > 0 for v in expected.values())
    gen = section(html, "generation")
    assert f"{expected['generated']} images were generated for {expected['jobs.parquet'] // 2} training images" in gen
    assert f"Query variants (used by the refinement step; {expected['query_generated']} in all)" in gen

    # The settings are those the signatures recorded, with their hashes.
    settings = section(html, "settings")
    assert "parser.backend=synthcc" in settings and "inpainter.backend=recolor" in settings and "k=2" in settings
    for sig in ("masks/signature.json", "jobs.signature.json", "generated/signature.json"):
        recorded = json.loads((work / sig).read_text())["hash"]
        assert re.search(rf"<code>{re.escape(sig)}</code>.*?<code>{recorded}</code>", settings), sig

    # Masks: originals with their overlays; variants: the original, its mask, K=2 variants per row.
    masks = section(html, "masks")
    assert masks.count("<b>original</b>") == 6 and masks.count("<b>mask</b>") == 6
    rows = gen.split('<div class="genrow">')[1:]
    assert len(rows) == 4 + 1
    for row in rows[:4]:
        assert row.count("<figure") == 2 + 2 and "(not at hand)" not in row
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert len(srcs) >= 12 + 4 * 4
    for s in srcs:
        p = work / s
        assert p.is_file() and _is_png(p) and p.resolve().is_relative_to(work / "figures"), s
    # The overlay of the first mask figure is the mask drawn over that original.
    from dlcr.generation.parsing import label_path
    from dlcr.io.images import read_label_map, read_rgb
    from dlcr.report.figures import mask_overlay

    m = re.search(r'src="([^"]+)" alt="mask ([^"]+)"', masks)
    expected_img = mask_overlay(read_rgb(data / m.group(2)), read_label_map(label_path(work / "masks", m.group(2))))
    assert np.array_equal(read_rgb(work / m.group(1)), expected_img)


def test_work_folder_without_its_originals_says_where_it_looked(folders, capsys, monkeypatch):
    work = folders["work"]
    from dlcr.config import load_config

    monkeypatch.chdir(folders["base"])  # the packaged synthcc data.root (out/synthcc) does not exist here
    code, out, err = run_cli("report", work, capsys=capsys)
    assert code == 0, err
    assert "built contents, settings, masks, generation" in out
    html = (work / "report.html").read_text()
    first = read_table(work / "masks" / "masks.parquet")[0]["path"]
    for sid in ("masks", "generation"):
        (note,) = notes(section(html, sid))
        assert note.startswith("originals not shown: they are not part of a work folder")
        assert f"{work / first} (the work folder itself)" in note
        packaged = (Path(load_config("synthcc").data.root) / first).absolute()
        assert f"{packaged} (data.root of the packaged 'synthcc' config)" in note
        assert note.endswith("pass --root <dataset root>")
    assert section(html, "masks").count("<b>mask</b>") == 6  # the label maps are still drawn (on grey)
    assert "(not at hand)" in section(html, "generation")
    code, out, err = run_cli("report", work, "--root", folders["base"], capsys=capsys)
    assert code == 0
    assert f"originals not shown: {folders['base'] / first} not found (--root {folders['base']} is not" in \
        notes(section((work / "report.html").read_text(), "masks"))[0]


def test_work_folder_missing_stages_are_named_precisely(folders, tmp_path, capsys):
    w = _copy(folders["work"], tmp_path / "w", "masks", "captions.parquet", "outfits.parquet", "jobs.parquet",
              "jobs.signature.json")
    code, out, err = run_cli("report", w, "--root", folders["data"], capsys=capsys)
    assert code == 0, err
    assert "work folder: built contents, settings, masks; skipped generation" in out
    manifest = w / "generated" / "manifest.parquet"
    assert f"  generation: no generated images (no {manifest} ({w / 'generated'} does not exist; run " \
           "`dlcr generate inpaint`))" in out.splitlines()
    html = (w / "report.html").read_text()
    contents = section(html, "contents")
    assert f"no {w / 'query_jobs.parquet'} (run `dlcr generate queries --plan-only`)" in contents
    assert re.search(r'data-count="generated">–<', contents)
    # Committed part files that were never consolidated: said so, not "missing".
    parts = w / "generated" / "parts"
    parts.mkdir(parents=True)
    shutil.copy2(w / "jobs.parquet", parts / "0001.parquet")
    code, out, err = run_cli("report", w, "--root", folders["data"], capsys=capsys)
    assert f"no {manifest}, but 1 part file(s) in {parts} hold committed images not yet consolidated" in out


# --------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------


def test_run_folder_report_shows_metrics_curves_checkpoints_and_config(folders, capsys):
    run = folders["run"]
    code, out, err = run_cli("report", run, capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[1] == "run folder: built metrics, curves, checkpoints, config; skipped retrieval"
    html = (run / "report.html").read_text()
    assert "mediapipe" not in html
    # The final metrics are those of eval/metrics.json, in percent as `dlcr evaluate` prints them.
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    cells = re.findall(r'data-protocol="([^"]+)" data-metric="([^"]+)">([^<]+)<', section(html, "metrics"))
    assert {p for p, _, _ in cells} == set(metrics) and len(cells) == 5 * len(metrics)
    for proto, key, text in cells:
        assert text == f"{100 * metrics[proto][key]:.2f}", (proto, key)
    # Curves: a real PNG drawn from log.jsonl.
    curves = run / "figures" / "curves.png"
    assert 'src="figures/curves.png"' in section(html, "curves") and _is_png(curves)
    with Image.open(curves) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape[1] >= 800 and px.std() > 5
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert f"{len(logged)} epoch(s) from <code>{run / 'log.jsonl'}</code>" in section(html, "curves")
    assert "evaluated at epoch(s) 1" in section(html, "curves")
    # Checkpoints and the resolved config.
    ck = section(html, "checkpoints")
    assert re.search(r'<td class="arm">last</td><td>1</td><td class="arm">small_resnet</td>', ck) and "complete" in ck
    import html as h

    config = h.unescape(re.search(r'<pre id="config"[^>]*>(.*?)</pre>', section(html, "config"), re.S).group(1))
    assert config == (run / "config.yaml").read_text()
    # Retrieval: precisely why not.
    (note,) = notes(section(html, "retrieval"))
    assert note == (f"skipped: no {run / 'eval' / 'features.npz'}: `dlcr evaluate` saves no test features "
                    "(the runs of `dlcr demo` do), so there is nothing to rank")


def test_run_folder_without_evaluate_shows_the_last_logged_evaluation(folders, tmp_path, capsys):
    run = _copy(folders["run"], tmp_path / "r", "log.jsonl", "checkpoints")
    code, out, err = run_cli("report", run, capsys=capsys)
    assert code == 0, err
    html = (run / "report.html").read_text()
    sec = section(html, "metrics")
    (note,) = notes(sec)
    assert note.startswith(f"no {run / 'eval' / 'metrics.json'} (written by `dlcr evaluate --checkpoint")
    assert note.endswith("showing the last evaluation logged during training instead (epoch 1)")
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    cells = re.findall(r'data-protocol="([^"]+)" data-metric="([^"]+)">([^<]+)<', sec)
    assert len(cells) == 6
    for proto, key, text in cells:
        assert text == f"{100 * last[f'{proto}_{key}']:.2f}"
    # No config.yaml: the checkpoint's recorded config is shown, and says so.
    assert "(no config.yaml)" in section(html, "config") and "small_resnet" in section(html, "config")


def test_run_folder_with_saved_features_gets_retrieval_panels(tmp_path, capsys):
    fake = _fake_demo_module()
    demo = fake.make_fake_demo(tmp_path / "demo", seeds=(0,))
    run = demo / "runs" / "dlcr_progressive_s0"
    code, out, err = run_cli("report", run, "--root", demo / "world", capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[1] == "run folder: built metrics, curves, retrieval; skipped checkpoints, config"
    html = (run / "report.html").read_text()
    panels = fake.retrieval_panels(html)
    assert len(panels) == 6
    refined = np.load(run / "eval" / "refined_sims.npy")
    for q, rows in panels:
        assert [lab for lab, _ in rows] == [run.name, "+ refinement"]
        assert rows[0][1] == fake.reference_top5(run, q)
        assert rows[1][1] == fake.reference_top5(run, q, sims=refined)
    for s in re.findall(r'<img[^>]* src="([^"]+)"', html):
        assert _is_png(run / s)
    # The curves come from history.json when there is no log.jsonl; the missing metrics are named.
    assert f"from <code>{run / 'history.json'}</code>" in section(html, "curves")
    assert f"no {run / 'eval' / 'metrics.json'}" in notes(section(html, "metrics"))[0]
    # Without --root the images are unknown: no config.yaml and no checkpoint to take data.root from.
    code, out, err = run_cli("report", run, capsys=capsys)
    assert code == 0
    assert (f"  retrieval: the test images are not at hand: no {run / 'config.yaml'} and no checkpoint recording "
            "a config, so the dataset root is unknown; pass --root <dataset root>") in out.splitlines()


# --------------------------------------------------------------------------------------------
# Other folders
# --------------------------------------------------------------------------------------------


def test_a_folder_of_no_known_kind_is_one_error_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("report", tmp_path / "empty", capsys=capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'empty'} is neither a demo, a work nor a "
                                                   "run folder: expected results.json")
    assert "masks/" in err and "log.jsonl" in err and not (tmp_path / "empty" / "report.html").exists()
    # The parent of runs: the runs are named.
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "log.jsonl").write_text("")
    code, out, err = run_cli("report", tmp_path / "runs", capsys=capsys)
    assert code == 2 and f"it holds {tmp_path / 'runs' / 'a'} (run): point `dlcr report` at one of them" in err
    code, out, err = run_cli("report", tmp_path / "nope", capsys=capsys)
    assert code == 2 and err == f"error: no such folder: {tmp_path / 'nope'} (`dlcr report` takes a demo, work " \
                                "or run folder)\n"


def test_demo_folder_still_gets_the_demo_report(tmp_path, capsys):
    fake = _fake_demo_module()
    demo = fake.make_fake_demo(tmp_path / "demo", seeds=(0,), test_ids=3)
    code, out, err = run_cli("report", demo, capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[1] == "demo folder: built results, world, generation, realphoto, retrieval, curves, features"
    assert "DLCR demo report" in (demo / "report.html").read_text()
