"""The demo report: section content against a fake demo folder, plus the figure helpers by hand."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.errors import InputError
from dlcr.evaluation.metrics import match_masks
from dlcr.generation.parsing import label_path
from dlcr.io.images import read_rgb, write_png
from dlcr.io.tables import write_table
from dlcr.report import build_demo_report
from dlcr.report.figures import mask_overlay, pca_2d, pick_identities, pick_queries, rank_cc
from dlcr.report.html import METRICS, metric_stats

# --------------------------------------------------------------------------------------------
# A fake demo folder (also used by tests/integration/test_report_browser.py)
# --------------------------------------------------------------------------------------------

ARMS = ("baseline", "dlcr_concat", "dlcr_progressive", "dlcr_progressive_refined")
FEATURE_ARMS = ("baseline", "dlcr_concat", "dlcr_progressive")
COLOURS = {1: (200, 40, 40), 2: (40, 80, 200), 3: (40, 160, 60)}


def _person(rng: np.random.Generator, clothes: int, h: int = 32, w: int = 16) -> np.ndarray:
    """A tiny noisy picture whose body colour follows the outfit, so thumbnails differ visibly."""
    img = rng.integers(0, 60, (h, w, 3)).astype(np.int32) + 150
    img[h // 5: h // 2, 3:-3] = COLOURS[clothes]
    img[h // 2: h - 3, 4:-4] = (60, 60, 60)
    return np.clip(img, 0, 255).astype(np.uint8)


def _labels(h: int = 32, w: int = 16) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[1: h // 5, 5:-5] = 13  # face
    lab[h // 5: h // 2, 3:-3] = 5  # upper clothes
    lab[h // 2: h - 3, 4:-4] = 9  # pants
    lab[h - 3:, 4:-4] = 18  # shoe
    return lab


def make_fake_demo(root: Path, seeds: tuple[int, ...] = (0, 1), k: int = 3, n_qvar: int = 2,
                   test_ids: int = 6, rng_seed: int = 0) -> Path:
    """Write a small demo folder with every file ``dlcr demo`` leaves behind."""
    rng = np.random.default_rng(rng_seed)
    world = root / "world"
    work = root / "work"

    def img(rel: str, clothes: int) -> None:
        write_png(world / rel, _person(rng, clothes))

    write_png(root / "figures" / "contact_sheet.png", np.full((8, 8, 3), 128, np.uint8))  # the world sheet

    # Training images, their masks, outfits and generated variants.
    train, outfits, man = [], [], []
    for pid in (1, 2, 3):
        for clo in (1, 2):
            outfits.append({"clothes_key": f"{pid:03d}_{clo}", "upper": f"colour{clo} shirt", "lower": "grey pants",
                            "footwear": "black shoes", "prompt": f"colour{clo} shirt, grey pants, black shoes"})
            for cam in (1, 2):
                rel = f"synthcc/train/{pid:03d}_{clo}_c{cam}_000.png"
                img(rel, clo)
                write_png(label_path(work / "masks", rel), _labels())
                train.append((rel, pid, clo))
    for rel, pid, clo in train:
        for v in range(k):
            tclo = 1 + (clo + v) % 3
            file = rel.replace(".png", f"_v{v}.png")
            write_png(work / "generated" / file, _person(rng, tclo))
            man.append({"job_id": f"{rel}-{v}", "kind": "train", "dataset": "synthcc", "source": rel,
                        "source_clothes_key": f"{pid:03d}_{clo}", "pid": pid,
                        "target_clothes_key": f"{1 + (pid % 3):03d}_{tclo}", "variant": v, "partition": v,
                        "prompt": f"a person in a shirt of colour {tclo} (variant {v})", "seed": v,
                        "generator": "recolor", "file": file, "width": 16, "height": 32,
                        "backend": "recolor", "model": ""})
    write_table(work / "generated" / "manifest.parquet", man)
    write_table(work / "outfits.parquet", outfits)

    # Stage 1 on real photographs (dlcr.testing.photos): crop, label map, variants, manifest.
    rp = root / "realphoto"
    write_png(rp / "originals" / "p.png", _person(rng, 1))
    write_png(rp / "masks" / "p.png", _labels())
    rp_variants = []
    for v in range(2):
        write_png(rp / "variants" / f"p_v{v}.png", _person(rng, 2 + v))
        rp_variants.append({"file": f"variants/p_v{v}.png", "prompt": f"outfit {v}", "seed": v})
    (rp / "manifest.json").write_text(json.dumps(
        {"version": 1, "status": "ok", "k": 2, "fallbacks": 0, "seconds": {"parse": 0.1},
         "photos": [{"name": "p", "credit": "test photo", "original": "originals/p.png", "mask": "masks/p.png",
                     "pose_found": True, "caption": "a person wearing a shirt", "variants": rp_variants}]}))

    # Test split: query = clothes 1 and 2 seen by camera 1; gallery = cameras 2, 3 plus same-camera junk.
    query, gallery = [], []
    for pid in range(10, 10 + test_ids):
        for clo in (1, 2):
            query.append((f"synthcc/query/{pid:03d}_{clo}_c1_000.png", pid, 1, clo))
            for cam in (2, 3):
                gallery.append((f"synthcc/test/{pid:03d}_{clo}_c{cam}_000.png", pid, cam, clo))
            gallery.append((f"synthcc/test/{pid:03d}_{clo}_c1_001.png", pid, 1, clo))
    for rel, _pid, _cam, clo in query + gallery:
        img(rel, clo)
    qman = []
    for rel, pid, _cam, clo in query:
        for v in range(n_qvar):
            file = rel.replace(".png", f"_q{v}.png")
            write_png(work / "query_generated" / file, _person(rng, 1 + (clo + v) % 3))
            qman.append({**man[0], "job_id": f"{rel}-{v}", "kind": "query", "source": rel, "pid": pid,
                         "source_clothes_key": f"{pid:03d}_{clo}", "variant": v, "file": file,
                         "prompt": f"query variant {v}"})
    write_table(work / "query_generated" / "manifest.parquet", qman)

    # Features: the baseline leans on clothes, DLCR on identity.
    dim = 16
    id_vec = {p: rng.normal(size=dim) for p in range(10, 10 + test_ids)}
    clo_vec = {c: rng.normal(size=dim) for c in (1, 2)}  # outfits shared across people: a clothes trap

    def feats(rows, w_id, w_clo):
        f = np.stack([w_id * id_vec[p] + w_clo * clo_vec[c] + 0.3 * rng.normal(size=dim) for _, p, _, c in rows])
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    for arm, (w_id, w_clo) in zip(FEATURE_ARMS, ((0.6, 1.5), (1.2, 1.0), (1.5, 0.6)), strict=True):
        for seed in seeds:
            run = root / "runs" / f"{arm}_s{seed}"
            g_rows = list(gallery)
            if arm == "dlcr_progressive":  # another gallery order: the report must align by path
                g_rows = [gallery[i] for i in rng.permutation(len(gallery))]
            qf, gf = feats(query, w_id, w_clo), feats(g_rows, w_id, w_clo)
            arrays = {"q_feats": qf, "g_feats": gf}
            for side, rows in (("q", query), ("g", g_rows)):
                arrays[f"{side}_pids"] = np.array([r[1] for r in rows])
                arrays[f"{side}_camids"] = np.array([r[2] for r in rows])
                arrays[f"{side}_clothes"] = np.array([r[1] * 10 + r[3] for r in rows])
            (run / "eval").mkdir(parents=True)
            np.savez(run / "eval" / "features.npz", **arrays)
            (run / "eval" / "paths.json").write_text(
                json.dumps({"query": [r[0] for r in query], "gallery": [r[0] for r in g_rows]}))
            if arm == "dlcr_progressive":
                # "Refined" similarity: the plain one plus a nudge towards the right identity.
                same = arrays["q_pids"][:, None] == arrays["g_pids"][None, :]
                np.save(run / "eval" / "refined_sims.npy", (qf @ gf.T + 0.3 * same).astype(np.float32))
            hist = []
            for ep in range(1, 5):
                row = {"epoch": ep, "loss": 5.0 / ep + seed * 0.1, "id": 3.0 / ep, "tri": 0.5, "adv": 0.1,
                       "acc": 0.2 * ep}
                if ep % 2 == 0:
                    row.update(standard_top1=0.5, standard_mAP=0.4, sc_top1=0.6, cc_top1=0.1 * ep + w_id / 10,
                               cc_mAP=0.1)
                hist.append(row)
            (run / "history.json").write_text(json.dumps(hist))

    # results.json: numbers chosen so the best per column is known.
    base = {"cc_top1": 0.20, "cc_map": 0.15, "sc_top1": 0.70, "sc_map": 0.60, "top1": 0.70, "map": 0.50}
    bumps = {"baseline": 0.0, "dlcr_concat": 0.05, "dlcr_progressive": 0.10, "dlcr_progressive_refined": 0.20}
    results: dict = {}
    for arm in ARMS:
        per_seed = [{**{m: round(v + bumps[arm] - 0.01 * i * (m != "sc_top1"), 4) for m, v in base.items()},
                     "seed": s} for i, s in enumerate(seeds)]
        entry = {m: float(np.mean([r[m] for r in per_seed])) for m in base}
        entry.update({f"{m}_std": float(np.std([r[m] for r in per_seed], ddof=1)) if len(seeds) > 1 else 0.0
                      for m in base})
        entry.update(seed=seeds[0], seeds=list(seeds), per_seed=per_seed)
        if arm == "baseline" and len(seeds) > 1:
            entry["cc_top1_std"] = 0.0123  # a stored std wins over the one computed from per_seed
        results[arm] = entry
    results["baseline"]["sc_top1"] = 0.95  # baseline best on same-clothes: bold must follow the numbers
    from dlcr.demo import DemoSettings, table_a1

    results["table_a1"] = table_a1(results, DemoSettings(seeds=tuple(seeds)))
    results["meta"] = {"seeds": list(seeds), "stage_seconds": {"world": 1.5, "generate": 30.2, "train": 400.0},
                       "versions": {"torch": "2.x", "dlcr": "0.1.0"}, "quick": True, "backend": "recolor",
                       "k": k, "l": n_qvar, "m": 5, "world": {"ids": 9, "seed": 0}}
    (root / "results.json").write_text(json.dumps(results))
    return root


# --------------------------------------------------------------------------------------------
# HTML parsing helpers
# --------------------------------------------------------------------------------------------


class _Collect(HTMLParser):
    """Flat list of (tag, attrs) start events plus data chunks, enough to read the page's structure."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, str], str]] = []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", {"tag": tag, **{k: v or "" for k, v in attrs}}, ""))

    def handle_endtag(self, tag):
        self.events.append(("end", {"tag": tag}, ""))

    def handle_data(self, data):
        self.events.append(("data", {}, data))


def parse(html: str) -> list[tuple[str, dict[str, str], str]]:
    p = _Collect()
    p.feed(html)
    return p.events


def table_cells(html: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """{(arm, metric): (text, bold)} of the results table."""
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    cur: tuple[str, str] | None = None
    text, bold = "", False
    for kind, attrs, data in parse(html):
        if kind == "start" and attrs["tag"] == "td" and "data-metric" in attrs:
            cur, text, bold = (attrs["data-arm"], attrs["data-metric"]), "", False
        elif kind == "start" and attrs["tag"] == "strong" and cur:
            bold = True
        elif kind == "data" and cur:
            text += data
        elif kind == "end" and attrs["tag"] == "td" and cur:
            out[cur] = (text, bold)
            cur = None
    return out


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def retrieval_panels(html: str) -> list[tuple[str, list[tuple[str, list[tuple[str, str]]]]]]:
    """[(query path, [(arm label, [(gallery path, 'hit'|'miss'), ...]), ...]), ...]."""
    panels: list = []
    fig_cls, in_lab = None, False
    for kind, attrs, data in parse(section(html, "retrieval")):
        if kind == "start" and attrs["tag"] == "figure":
            fig_cls = attrs.get("class", "")
        elif kind == "start" and attrs["tag"] == "img" and fig_cls == "q":
            panels.append((attrs["alt"], []))
        elif kind == "start" and attrs["tag"] == "img" and fig_cls in ("hit", "miss"):
            panels[-1][1][-1][1].append((attrs["alt"], fig_cls))
        elif kind == "start" and attrs["tag"] == "div" and attrs.get("class") == "lab":
            in_lab = True
        elif kind == "data" and in_lab:
            panels[-1][1].append((data, []))
            in_lab = False
    return panels


# --------------------------------------------------------------------------------------------
# Reference: clothes-changing top-5 by brute force
# --------------------------------------------------------------------------------------------


def reference_top5(run: Path, query_path: str, sims: np.ndarray | None = None) -> list[tuple[str, str]]:
    f = np.load(run / "eval" / "features.npz")
    paths = json.loads((run / "eval" / "paths.json").read_text())
    q = paths["query"].index(query_path)
    s = f["q_feats"][q] @ f["g_feats"].T if sims is None else sims[q]
    entries = []
    for g in range(len(paths["gallery"])):
        same = f["q_pids"][q] == f["g_pids"][g]
        if same and (f["q_camids"][q] == f["g_camids"][g] or f["q_clothes"][q] == f["g_clothes"][g]):
            continue  # junk under the clothes-changing protocol
        entries.append((-float(s[g]), paths["gallery"][g], "hit" if same else "miss"))
    entries.sort(key=lambda e: e[0])
    return [(p, c) for _, p, c in entries[:5]]


def _is_png(path: Path) -> bool:
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
    with Image.open(path) as im:
        im.verify()
    return True


# --------------------------------------------------------------------------------------------
# Tests: the whole report
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    root = make_fake_demo(tmp_path_factory.mktemp("demo"))
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
