"""The paper's appendix figures in the demo report, drawn at report time from what the demo left:

* Fig. A5 (:func:`tsne_block`): t-SNE of the query and gallery features of a few test identities,
  baseline vs DLCR (the saved ``eval/features.npz``);
* Fig. A6 (:func:`cam_block`): Grad-CAM activation maps of both models on a few test images (their
  checkpoints, the test images);
* Fig. A7 (:func:`realgen_block`): t-SNE of a few identities' real training images and their generated
  variants, embedded by the DLCR model (its checkpoint, the work folder's generated manifest).

They need the ``report`` extra (scikit-learn's t-SNE, captum's ``LayerGradCam``); without it, or
without their inputs, each block raises :class:`~dlcr.report.common.Skip` saying what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import first_line
from dlcr.io.paths import safe_join
from dlcr.report.common import BASELINE, DLCR, N_IDS, Skip, _Assets, _e, images_root, work_root
from dlcr.report.runs import _align, _compared_runs, _run_for, check_paths, find_runs, load_paths

#: test images shown in Fig. A6, and how many clothes-changing queries its clothes share is measured on
N_CAM_SHOWN, N_CAM_STATS = 4, 8
#: clothes-changing gallery matches per query that make its Grad-CAM target
MAX_MATCHES = 4
#: Fig. A5: at most this many points per identity; Fig. A7: identities, real images each, variants each
MAX_PER_ID, N_GEN_IDS, N_REAL, N_VARIANTS = 40, 5, 6, 3
EXTRA = {"sklearn": "scikit-learn", "captum": "captum"}


def report_extra_missing(*modules: str) -> str | None:
    """Why the ``report`` extra's ``modules`` (``sklearn``, ``captum``) cannot be used here, or None:
    the imports are really tried."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module({"sklearn": "sklearn.manifold", "captum": "captum.attr"}[mod])
        except Exception as e:  # a broken install raises anything
            return (f"{EXTRA[mod]} cannot be imported ({first_line(e)}); it comes with the `report` extra: "
                    "pip install -e '.[report]'")
    return None


def _need(*modules: str) -> None:
    why = report_extra_missing(*modules)
    if why:
        raise Skip(why)


def _pair(root: Path, results: Mapping[str, Any] | None) -> tuple[tuple[Path, dict[str, np.ndarray]], ...]:
    pair = _compared_runs(root, results)
    if pair is None:
        raise Skip(f"needs {root / 'runs'}/{BASELINE}_s* and {root / 'runs'}/{DLCR}_s* with eval/features.npz")
    return pair


def _per_identity(pids: np.ndarray, cap: int) -> np.ndarray:
    """Indices keeping at most ``cap`` rows per identity, evenly spread over each identity's rows."""
    keep = []
    for pid in dict.fromkeys(pids.tolist()):
        rows = np.flatnonzero(pids == pid)
        keep.append(rows[np.unique(np.linspace(0, len(rows) - 1, min(cap, len(rows))).round().astype(int))])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def tsne_block(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    """Fig. A5: t-SNE of query (hollow) and gallery (filled) features of a few test identities."""
    from dlcr.report.figures import distance_ratio, pick_identities, tsne_2d
    from dlcr.report.plots import Embedding, plot_embeddings

    _need("sklearn")
    (rb, fb), (rd, fd) = _pair(root, results)
    ids = pick_identities(fb["g_pids"], fb["g_clothes"], n=N_IDS)
    pb, pd = load_paths(rb), load_paths(rd)
    order: dict[str, np.ndarray] = {}
    if pb is not None and pd is not None:  # show the same images in both panels, in the same order
        check_paths(rb, fb, pb)
        check_paths(rd, fd, pd)
        order = {"q": _align(pb["query"], pd["query"], "query"), "g": _align(pb["gallery"], pd["gallery"], "gallery")}
    views, ratios = [], []
    for name, f, aligned in (("baseline", fb, {}), ("DLCR progressive", fd, order)):
        parts = {s: {k: f[f"{s}_{k}"][aligned[s]] if s in aligned else f[f"{s}_{k}"]
                     for k in ("feats", "pids", "clothes")} for s in ("q", "g")}
        x = np.concatenate([parts["q"]["feats"], parts["g"]["feats"]])
        pids = np.concatenate([parts["q"]["pids"], parts["g"]["pids"]])
        clothes = np.concatenate([parts["q"]["clothes"], parts["g"]["clothes"]])
        is_query = np.arange(len(x)) < len(parts["q"]["pids"])
        sel = np.flatnonzero(np.isin(pids, ids))
        sel = sel[_per_identity(pids[sel], MAX_PER_ID)]
        if len(sel) < 4:
            raise Skip("too few test images of the chosen identities for a t-SNE")
        views.append(Embedding(name, tsne_2d(x[sel], seed=0), pids[sel], clothes[sel], is_query[sel]))
        ratios.append((name, distance_ratio(x[sel], pids[sel])))
    out = assets.figure_path("tsne.png")
    plot_embeddings(views, out, styles=(("gallery", "o", False), ("query", "o", True)))
    rtxt = ", ".join(f"{_e(n)} {r:.2f}" for n, r in ratios)
    return (f'<p class="expl">Query (hollow) and gallery (filled) features of {len(ids)} test identities '
            f"({len(views[0].pids)} images) embedded with t-SNE (scikit-learn, perplexity "
            f"{_perplexity(len(views[0].pids))}, fixed seed; fitted per model; distances between clusters "
            "are not to scale). Colour = identity, marker = outfit. In the paper (Fig. A5) DLCR keeps an "
            "identity's outfits together where the baseline splits them by outfit. Within- / between-identity distance of these "
            f"points in the full feature space (lower is better): {rtxt}.</p>"
            f'<img class="plot" src="{_e(assets.href(out))}" alt="t-SNE of test features">')


def _perplexity(n: int) -> str:
    from dlcr.report.figures import tsne_perplexity

    return f"{tsne_perplexity(n):.3g}"


def _chosen_queries(f: Mapping[str, np.ndarray], good: np.ndarray, n: int) -> list[int]:
    """Queries with a clothes-changing match, spread over the list, one per identity while possible."""
    from dlcr.report.figures import one_per_key, spread

    eligible = [int(i) for i in np.flatnonzero(good.any(axis=1))]
    if not eligible:
        raise Skip("no query has a clothes-changing match in the gallery")
    return one_per_key(spread(eligible, n), lambda i: f["q_pids"][i].item(), n)


def _cc_good(f: Mapping[str, np.ndarray]) -> np.ndarray:
    from dlcr.evaluation.metrics import match_masks

    return match_masks(f["q_pids"], f["g_pids"], f["q_camids"], f["g_camids"], f["q_clothes"], f["g_clothes"],
                       mode="CC")[0]


def _targets(rm: Any, paths: Sequence[str], good: np.ndarray, rows: Sequence[int], images: Path) -> np.ndarray:
    """Per query row: the mean unit feature of (up to :data:`MAX_MATCHES` of) its clothes-changing
    matches in the gallery, as the model ``rm`` embeds them."""
    from dlcr.report.reidmodel import embed

    picked = [np.flatnonzero(good[r])[:MAX_MATCHES] for r in rows]
    flat = [int(g) for p in picked for g in p]
    feats = embed(rm, [safe_join(images, paths[g]) for g in flat])
    pos = {g: i for i, g in enumerate(flat)}
    return np.stack([feats[[pos[int(g)] for g in p]].mean(axis=0) for p in picked])


def _clothes_share(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> float | None:
    """Mean share of the maps' mass on clothes pixels out of their mass on the person (label maps)."""
    from dlcr.lip import CLOTHES_LABELS
    from dlcr.report.figures import mass_share

    shares = [mass_share(m, np.isin(lab, sorted(CLOTHES_LABELS)), lab > 0)
              for m, lab in zip(maps, masks, strict=True) if lab is not None and lab.shape == m.shape]
    vals = [s for s in shares if s is not None]
    return float(np.mean(vals)) if vals else None


def _query_mask(work: Path, rel: str) -> np.ndarray | None:
    from dlcr.errors import DlcrError
    from dlcr.generation.parsing import label_path
    from dlcr.io.images import read_label_map

    try:
        p = label_path(work / "masks", rel)
        return read_label_map(p) if p.is_file() else None
    except DlcrError:
        return None


def cam_block(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    """Fig. A6: Grad-CAM of the backbone's last stage, baseline vs DLCR, on clothes-changing queries."""
    from dlcr.io.images import read_rgb
    from dlcr.report.plots import plot_activation_grid
    from dlcr.report.reidmodel import grad_cam, load_run_model, upsample

    _need("captum")
    (rb, fb), (rd, fd) = _pair(root, results)
    pb, pd = load_paths(rb), load_paths(rd)
    if pb is None or pd is None:
        raise Skip(f"needs {rb / 'eval' / 'paths.json'} and {rd / 'eval' / 'paths.json'} (which test images)")
    check_paths(rb, fb, pb)
    check_paths(rd, fd, pd)
    qi = _align(pb["query"], pd["query"], "query")  # DLCR's row of the baseline's query j: qi[j]
    good_b, good_d = _cc_good(fb), _cc_good(fd)
    chosen = _chosen_queries(fb, good_b, N_CAM_STATS)
    images, work = images_root(root, results), work_root(root, results)
    rgbs = [read_rgb(safe_join(images, pb["query"][q])) for q in chosen]
    columns, titles, shares = [], [], []
    for name, run, p, good, rows in (("baseline", rb, pb, good_b, chosen),
                                     ("DLCR progressive", rd, pd, good_d, [int(qi[q]) for q in chosen])):
        rm = load_run_model(run)
        maps, scores = grad_cam(rm, rgbs, _targets(rm, p["gallery"], good, rows, images))
        full = [upsample(m, *im.shape[:2]) for m, im in zip(maps, rgbs, strict=True)]
        columns.append((name, full[:N_CAM_SHOWN]))
        titles.append([f"cos {s:.2f}" for s in scores[:N_CAM_SHOWN]])
        shares.append((name, _clothes_share(full, [_query_mask(work, pb["query"][q]) for q in chosen])))
    shown = chosen[:N_CAM_SHOWN]
    out = assets.figure_path("activation_maps.png")
    plot_activation_grid(rgbs[:len(shown)], columns, [f"id {fb['q_pids'][q]}, clothes {fb['q_clothes'][q]}"
                                                      for q in shown], out,
                         cell_titles=[list(t) for t in zip(*titles, strict=True)])
    share_txt = ""
    if all(s is not None for _, s in shares):
        share_txt = (f" Share of the map on clothes pixels (of the map on the person, from the work folder's "
                     f"masks; {len(chosen)} queries): "
                     + ", ".join(f"{_e(n)} {100 * s:.0f}%" for n, s in shares) + ".")
    return (f'<p class="expl">Grad-CAM (captum <code>LayerGradCam</code>) of the last backbone stage on '
            f"{len(shown)} clothes-changing queries of different people. The target is the cosine similarity of "
            "the image's feature to the mean feature of the same person's gallery images in other clothes, as "
            "that model embeds them (its clothes-changing matches: test identities are not among the "
            "classifier's training identities, so there is no logit of the image's own id); under each map, "
            "that similarity. Red = the regions that raise it most. In the paper (Fig. A6) DLCR attends "
            f"less to the clothes and more to the rest of the person than the baseline.{share_txt}</p>"
            f'<img class="plot" src="{_e(assets.href(out))}" alt="activation maps, baseline vs DLCR">')


def _generated_sets(gen_dir: Path) -> dict[Any, dict[str, list[str]]]:
    """{pid: {real training image: [its generated files, by variant]}} of a generated manifest."""
    from dlcr.generation.outputs import read_manifest

    sets: dict[Any, dict[str, list[tuple[int, str]]]] = {}
    for r in read_manifest(gen_dir):
        if r.kind == "train" and r.file:
            sets.setdefault(r.pid, {}).setdefault(r.source, []).append((int(r.variant), r.file))
    return {pid: {src: [f for _, f in sorted(v)] for src, v in srcs.items()} for pid, srcs in sets.items()}


def realgen_block(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    """Fig. A7: t-SNE of real (filled) and generated (hollow) training images, DLCR model features."""
    from dlcr.generation.layout import GENERATED
    from dlcr.generation.outputs import GENERATED_MANIFEST
    from dlcr.report.figures import nearest_same_identity, spread, tsne_2d
    from dlcr.report.plots import Embedding, plot_embeddings
    from dlcr.report.reidmodel import embed, load_run_model

    _need("sklearn")
    run = _run_for(DLCR, find_runs(root), results)
    if run is None:
        raise Skip(f"needs {root / 'runs'}/{DLCR}_s* (its checkpoint embeds the images)")
    gen_dir = work_root(root, results) / GENERATED
    if not (gen_dir / GENERATED_MANIFEST).is_file():
        raise Skip(f"no {gen_dir / GENERATED_MANIFEST} (no generated training images)")
    sets = _generated_sets(gen_dir)
    ids = sorted(sets, key=lambda p: (-len(sets[p]), -sum(map(len, sets[p].values())), str(p)))[:N_GEN_IDS]
    if not ids:
        raise Skip(f"{gen_dir / GENERATED_MANIFEST} lists no generated training image")
    images = images_root(root, results)
    paths, pids, generated = [], [], []
    for pid in ids:
        for src in spread(sorted(sets[pid]), N_REAL)[:N_REAL]:
            files = sets[pid][src][:N_VARIANTS]
            paths += [safe_join(images, src)] + [safe_join(gen_dir, f) for f in files]
            pids += [pid] * (1 + len(files))
            generated += [False] + [True] * len(files)
    pid_a, gen_a = np.asarray(pids), np.asarray(generated)
    if len(paths) < 4 or not gen_a.any():
        raise Skip("too few real and generated images of the chosen identities for a t-SNE")
    feats = embed(load_run_model(run), paths)
    view = Embedding(f"DLCR progressive ({run.name})", tsne_2d(feats, seed=0), pid_a, gen_a.astype(int), gen_a)
    out = assets.figure_path("tsne_real_generated.png")
    plot_embeddings([view], out, styles=(("real", "o", False), ("generated", "s", True)))
    agree = nearest_same_identity(feats[gen_a], pid_a[gen_a], feats[~gen_a], pid_a[~gen_a])
    return (f'<p class="expl">{int((~gen_a).sum())} real training images of {len(ids)} identities (filled circles) '
            f"and {int(gen_a.sum())} of their generated clothes variants (hollow squares; up to {N_VARIANTS} "
            "per image), embedded by the DLCR model and laid out with t-SNE (perplexity "
            f"{_perplexity(len(paths))}, fixed seed). Colour = identity. In the paper (Fig. A7) the generated "
            "images fall among the real images of the same person, so they add clothes variety without changing who "
            f"it is. Generated images whose nearest real image (cosine) is of the same person: "
            f"{100 * agree:.0f}%.</p>"
            f'<img class="plot" src="{_e(assets.href(out))}" alt="t-SNE of real and generated images">')
