"""The demo report: section content against a fake demo folder, plus the figure helpers by hand."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.errors import InputError
from dlcr.evaluation.metrics import match_masks
from dlcr.io.images import read_rgb
from dlcr.report import build_demo_report
from dlcr.report.figures import mask_overlay, pca_2d, pick_identities, pick_queries, rank_cc
from dlcr.report.html import METRICS, metric_stats
from fake_demo import (  # noqa: F401
    ARMS,
    FEATURE_ARMS,
    _is_png,
    _labels,
    add_fake_checkpoints,
    make_fake_demo,
    parse,
    reference_top5,
    retrieval_panels,
    section,
    table_cells,
)

# --------------------------------------------------------------------------------------------
# Tests: the whole report
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    root = make_fake_demo(tmp_path_factory.mktemp("demo"))
    add_fake_checkpoints(root)  # the models of Fig. A6 / A7
    out = build_demo_report(root)
    return root, out.read_text(encoding="utf-8")


def test_report_has_every_section_and_no_skips(demo):
    root, html = demo
    assert (root / "report.html").is_file()
    for sid in ("results", "generation", "realphoto", "retrieval", "curves", "features"):
        assert f'<section id="{sid}">' in html
    assert 'class="note"' not in html  # every input is present, so nothing is skipped
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html


def test_every_linked_image_exists_and_is_png(demo):
    root, html = demo
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert "figures/curves.png" in srcs and "figures/pca.png" in srcs
    assert len(srcs) > 40
    for s in srcs:
        assert not s.startswith("/") and ".." not in s
        p = root / s
        assert p.is_file() and _is_png(p), s
        assert p.resolve().is_relative_to((root / "figures").resolve())
    with Image.open(root / "figures" / "curves.png") as im:
        assert im.size[0] >= 800


def test_results_table_matches_results_json(demo):
    root, html = demo
    results = json.loads((root / "results.json").read_text())
    cells = table_cells(section(html, "results"))
    assert len(cells) == len(ARMS) * len(METRICS)
    for arm in ARMS:
        for m, _ in METRICS:
            r = results[arm]
            vals = [row[m] for row in r["per_seed"]]
            std = r.get(f"{m}_std", float(np.std(vals, ddof=1)))
            expected = f"{100 * r[m]:.1f} ± {100 * std:.1f}"
            assert cells[(arm, m)][0] == expected, (arm, m)
    # Bold marks the best mean per column: refined everywhere except SC top-1, where the baseline wins.
    for m, _ in METRICS:
        bold = sorted(a for a in ARMS if cells[(a, m)][1])
        assert bold == (["baseline"] if m == "sc_top1" else ["dlcr_progressive_refined"]), m
    assert cells[("baseline", "cc_top1")][0].endswith("± 1.2")  # the stored std, not the computed one
    res = section(html, "results")
    assert 'id="per-seed-table"' in res and res.count("<tr>") >= 1 + 4 * 2
    assert "400.0 s" not in res and "6.7 min" in res  # 400 s shown in minutes
    assert "torch" in res and "recolor" in res


def test_generation_grid_rows(demo):
    root, html = demo
    gen = section(html, "generation")
    rows = gen.split('<div class="genrow">')[1:]
    assert len(rows) == 4 + 1  # four training sources + one query with its variants
    for row in rows[:4]:
        assert row.count("<figure") == 2 + 3  # original, mask, K=3 variants
        assert "clothes mask" in row and "colour" in row
        for v in range(3):
            assert f"(variant {v})" in row
    assert "query variant 1" in rows[4]
    pids = {re.search(r'alt="synthcc/train/(\d+)_', r).group(1) for r in rows[:4]}
    assert len(pids) == 3  # one source per identity while there are identities left


def test_mask_overlay_thumbnail_is_the_overlay_of_the_source(demo):
    root, html = demo
    gen = section(html, "generation")
    m = re.search(r'<img[^>]* src="(figures/thumbs/[^"]*-mask-[^"]+)" alt="mask ([^"]+)"', gen)
    src, source = m.group(1), m.group(2)
    expected = mask_overlay(read_rgb(root / "world" / source), _labels())
    assert np.array_equal(read_rgb(root / src), expected)
    assert not np.array_equal(expected, read_rgb(root / "world" / source))


def test_retrieval_panels_match_brute_force(demo):
    root, html = demo
    panels = retrieval_panels(html)
    assert len(panels) == 6
    queries = [q for q, _ in panels]
    assert len(set(queries)) == 6
    runs = root / "runs"
    refined = np.load(runs / "dlcr_progressive_s0" / "eval" / "refined_sims.npy")
    hits = misses = 0
    for q, rows in panels:
        labels = [lab for lab, _ in rows]
        assert labels == ["baseline", "DLCR progressive", "DLCR + refinement"]
        assert rows[0][1] == reference_top5(runs / "baseline_s0", q)
        assert rows[1][1] == reference_top5(runs / "dlcr_progressive_s0", q)
        assert rows[2][1] == reference_top5(runs / "dlcr_progressive_s0", q, sims=refined)
        hits += sum(c == "hit" for _, r in rows for _, c in r)
        misses += sum(c == "miss" for _, r in rows for _, c in r)
    assert hits > 0 and misses > 0
    # Queries where the two arms disagree at rank 1 come first.
    first = panels[0][1]
    assert first[0][1][0][1] != first[1][1][0][1]


def test_retrieval_summary_counts(demo):
    root, html = demo
    runs = root / "runs"
    ok = {}
    for arm in ("baseline", "dlcr_progressive"):
        paths = json.loads((runs / f"{arm}_s0" / "eval" / "paths.json").read_text())
        ok[arm] = [reference_top5(runs / f"{arm}_s0", q)[0][1] == "hit" for q in paths["query"]]
    n = len(ok["baseline"])  # every fake query has a clothes-changing match
    text = section(html, "retrieval")
    assert f"baseline {100 * sum(ok['baseline']) / n:.1f}%" in text
    assert f"DLCR progressive {100 * sum(ok['dlcr_progressive']) / n:.1f}%" in text
    wins = sum(d and not b for b, d in zip(ok["baseline"], ok["dlcr_progressive"], strict=True))
    assert f"wrong: {wins} queries" in text


def test_features_and_curves_sections(demo):
    root, html = demo
    assert "6 test identities" in section(html, "features")
    with Image.open(root / "figures" / "pca.png") as im:
        assert im.size[0] > im.size[1]  # two panels side by side
    assert "one line per seed" in section(html, "curves")


# --------------------------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------------------------


def test_missing_pieces_give_notes_not_crashes(tmp_path):
    root = make_fake_demo(tmp_path / "d", seeds=(3,), test_ids=3)
    shutil.rmtree(root / "work" / "generated")
    (root / "runs" / "dlcr_progressive_s3" / "eval" / "features.npz").unlink()
    for h in (root / "runs").glob("*/history.json"):
        h.unlink()
    html = build_demo_report(root).read_text()
    assert "skipped: no generated images" in section(html, "generation")
    assert "skipped:" in section(html, "retrieval") and "features.npz" in section(html, "retrieval")
    assert "skipped:" in section(html, "features")
    assert "skipped: no runs/*/history.json" in section(html, "curves")
    # One seed: no ± and the results table is still there.
    cells = table_cells(section(html, "results"))
    assert cells[("baseline", "cc_top1")][0] == "20.0"


def test_damaged_results_and_empty_folder(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    html = build_demo_report(tmp_path).read_text()
    assert "not valid JSON" in section(html, "results")
    for sid in ("generation", "retrieval", "curves", "features"):
        assert "skipped" in section(html, sid)
    with pytest.raises(InputError, match="not found"):
        build_demo_report(tmp_path / "nope")


def test_real_photo_note_claims_mediapipe_missing_only_when_its_import_fails(tmp_path, monkeypatch):
    import html as h
    import sys

    from dlcr.report.html import pose_extra_missing

    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    shutil.rmtree(root / "realphoto")
    did_not_run = f"skipped: the real-photo stage did not run (no {root.resolve() / 'realphoto' / 'manifest.json'}; "
    note = h.unescape(section(build_demo_report(root).read_text(), "realphoto"))
    assert did_not_run in note
    why = pose_extra_missing()
    if why is None:  # mediapipe imports here: the note must not say it is missing
        assert "mediapipe" not in note and "everything it needs is installed here" in note
    else:
        assert f"it cannot run here: {why})" in note
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # now `import mediapipe` fails
    note = h.unescape(section(build_demo_report(root).read_text(), "realphoto"))
    assert did_not_run + "it cannot run here: mediapipe cannot be imported (" in note


def test_skipped_sections_name_the_paths_they_checked(tmp_path):
    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    shutil.rmtree(root / "work" / "generated")
    (root / "figures" / "contact_sheet.png").unlink()
    html = build_demo_report(root).read_text()
    gen = root.resolve() / "work" / "generated"
    assert (f"skipped: no generated images (no {gen / 'manifest.parquet'} ({gen} does not exist; run "
            "`dlcr generate inpaint`))") in section(html, "generation")
    assert f"skipped: {root.resolve() / 'figures' / 'contact_sheet.png'} not found" in section(html, "world")


def test_paths_leaving_the_world_are_refused(tmp_path):
    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    for arm in ("baseline", "dlcr_progressive"):
        p = root / "runs" / f"{arm}_s0" / "eval" / "paths.json"
        d = json.loads(p.read_text())
        d["query"] = [f"../../etc/passwd{i}" for i in range(len(d["query"]))]
        p.write_text(json.dumps(d))
    html = build_demo_report(root).read_text()
    assert "leaves the root folder" in section(html, "retrieval")
    assert "generation" in html and 'class="genrow"' in html  # other sections unaffected


def test_cli_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from dlcr.cli.report import report_cmd

    root = make_fake_demo(tmp_path / "d", seeds=(0,), test_ids=3)
    app = typer.Typer()
    app.command("report")(report_cmd)
    app.command("noop")(lambda: None)  # two commands, so "report" is a real sub-command
    res = CliRunner().invoke(app, ["report", str(root)])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output and (root / "report.html").is_file()


# --------------------------------------------------------------------------------------------
# Helpers, by hand
# --------------------------------------------------------------------------------------------


def test_rank_cc_by_hand():
    q_pids, q_cams, q_clo = np.array([1, 2]), np.array([1, 1]), np.array([1, 1])
    g_pids = np.array([1, 1, 1, 2, 2])
    g_cams = np.array([1, 2, 2, 2, 3])
    g_clo = np.array([2, 1, 2, 1, 2])
    good, junk = match_masks(q_pids, g_pids, q_cams, g_cams, q_clo, g_clo, mode="CC")
    assert good.tolist() == [[False, False, True, False, False], [False, False, False, False, True]]
    assert junk.tolist() == [[True, True, False, False, False], [False, False, False, True, False]]
    sims = np.array([[0.9, 0.8, 0.1, 0.5, 0.3], [0.2, 0.1, 0.3, 0.9, 0.4]])
    rk = rank_cc(sims, good, junk, k=5)
    assert rk.top.tolist() == [[3, 4, 2, -1, -1], [4, 2, 0, 1, -1]]
    assert rk.correct.tolist() == [[False, False, True, False, False], [True, False, False, False, False]]
    assert rk.eligible.tolist() == [True, True]
    with pytest.raises(InputError):
        rank_cc(sims[:, :4], good, junk)
    with pytest.raises(InputError):
        rank_cc(np.full_like(sims, np.nan), good, junk)


def test_pick_queries_alternates_disagreements_and_spreads_ids():
    first = np.array([0, 1, 0, 0, 1, 1, 0, 0], bool)
    second = np.array([1, 0, 1, 1, 1, 0, 0, 1], bool)
    eligible = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)  # the last query has no CC match
    pids = np.array([1, 2, 1, 3, 4, 5, 6, 7])
    # wins (second only): 0, 2, 3; losses (first only): 1, 5; same: 4, 6.
    # Interleaved: 0, 1, 2, 5, 3 then rest 4, 6; query 2 repeats identity 1 so it moves to the end.
    assert pick_queries(first, second, eligible, pids, n=4) == [0, 1, 5, 3]
    assert pick_queries(first, second, eligible, pids, n=10) == [0, 1, 5, 3, 4, 6, 2]


def test_pca_2d_against_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)) * np.array([5, 2, 1, 0.5, 0.2, 0.1])
    coords, ratio = pca_2d(x)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    xc = x - x.mean(0)
    for j in range(2):
        ref = xc @ evecs[:, j]
        assert np.allclose(np.abs(coords[:, j]), np.abs(ref))
        assert coords[np.argmax(np.abs(coords[:, j])), j] > 0
    assert np.allclose(ratio, evals[:2] / evals.sum())
    # Points on a line: everything on PC1.
    line = np.outer(np.arange(5.0), [1.0, 2.0, 2.0])
    c, r = pca_2d(line)
    assert np.allclose(np.abs(c[:, 0]), np.abs(np.arange(5.0) - 2) * 3) and np.allclose(r, [1, 0])
    with pytest.raises(InputError):
        pca_2d(np.zeros((1, 3)))


def test_pick_identities_prefers_many_outfits():
    pids = np.array([5, 5, 5, 6, 6, 7, 7, 7, 7])
    clothes = np.array([1, 2, 3, 1, 2, 1, 1, 1, 1])
    assert pick_identities(pids, clothes, n=2) == [5, 6]
    assert pick_identities(pids, clothes, n=5) == [5, 6, 7]


def test_metric_stats():
    arm = {"cc_top1": 0.6, "per_seed": [{"cc_top1": 0.5, "seed": 0}, {"cc_top1": 0.7, "seed": 1}], "seeds": [0, 1]}
    mean, std, n = metric_stats(arm, "cc_top1")
    assert mean == 0.6 and n == 2 and std == pytest.approx(np.sqrt(0.02))
    assert metric_stats({"cc_top1": 0.3, "seeds": [0]}, "cc_top1") == (0.3, None, 1)
    assert metric_stats({"per_seed": [{"map": 0.2}, {"map": 0.4}]}, "map")[0] == pytest.approx(0.3)
    assert metric_stats({}, "map") == (None, None, 0)


def test_mask_overlay_by_hand():
    rgb = np.full((2, 2, 3), 100, np.uint8)
    lab = np.array([[0, 5], [9, 18]], np.uint8)
    out = mask_overlay(rgb, lab, alpha=0.5)
    assert out[0, 0].tolist() == [60, 60, 60]  # dimmed to 60 %
    assert out[0, 1].tolist() == [165, 80, 80]  # half way to (230, 60, 60)
    assert out[1, 0].tolist() == [75, 105, 165]
    assert out[1, 1].tolist() == [70, 145, 90]


def test_spread_and_one_per_key():
    from dlcr.report.figures import one_per_key, spread

    assert spread(list(range(10)), 3) == [0, 3, 6, 9, 1, 2, 4, 5, 7, 8]
    assert spread([1, 2], 5) == [1, 2]
    people = ["a1", "a2", "b1", "c1", "b2"]
    assert one_per_key(people, lambda s: s[0], 3) == ["a1", "b1", "c1"]
    assert one_per_key(people, lambda s: s[0], 4) == ["a1", "b1", "c1", "a2"]  # filled up in order
    assert one_per_key(people, lambda s: s[0], 9) == ["a1", "b1", "c1", "a2", "b2"]


def test_table_a1_and_validation_curves(tmp_path):
    """The demo's Table A1 rows are shown with the numbers of results.json, no results.json entry that
    is not an arm becomes a row of the main table, and curves come from the validation split."""
    from dlcr.demo import DemoSettings, table_a1

    root = make_fake_demo(tmp_path / "demo")
    results = json.loads((root / "results.json").read_text())
    assert results["table_a1"] == table_a1(results, DemoSettings(seeds=(0, 1)))
    results["curves"] = {"baseline": {"epochs": [2, 4], "val_cc_top1": [0.1, 0.2]}}
    (root / "results.json").write_text(json.dumps(results))
    for hist_path in (root / "runs").glob("*/history.json"):
        hist = json.loads(hist_path.read_text())
        for row in hist:
            if "cc_top1" in row:
                row["val_cc_top1"] = row.pop("cc_top1") / 2
        hist_path.write_text(json.dumps(hist))
    html = build_demo_report(root).read_text()
    res = section(html, "results")
    assert 'id="table-a1"' in res
    rows = re.findall(r'<tr data-row="([^"]+)">(.*?)</tr>', res, flags=re.S)
    expected = results["table_a1"]["rows"] + [results["table_a1"]["concat"]]
    assert [r for r, _ in rows] == [str(r["row"]) for r in expected]
    for (_, cells), exp in zip(rows, expected, strict=True):
        cc = re.findall(r"<td>([^<]*)</td>", cells)[4]  # row, data, sampler, refinement, then CC top-1
        assert cc == f"{100 * exp['cc_top1']:.1f} ± {100 * exp['cc_top1_std']:.1f}", (cc, exp)
    main = res.split('id="table-a1"')[0]
    assert "table_a1" not in main and ">curves<" not in main  # not arms
    assert "the validation split" in section(html, "curves")
