"""Section "Real photographs" of the demo report: stage 1 on real portraits, as
:func:`dlcr.demo.realphoto.run_real_photo_stage` left it (or why it did not run here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlcr.errors import InputError
from dlcr.io.paths import safe_join
from dlcr.report.common import _PART_LEGEND, Skip, _Assets, _e, _fmt_s, _img, _num, _read_json


def pose_extra_missing() -> str | None:
    """Why the ``pose`` extra (mediapipe) cannot run here, or None: the import is really tried, so an
    installed mediapipe is never reported missing."""
    try:
        import mediapipe  # noqa: F401
    except Exception as e:  # a broken install raises anything (e.g. a protobuf mismatch)
        from dlcr.errors import first_line

        return f"mediapipe cannot be imported ({first_line(e)})"
    from dlcr.generation.parsers.pose import mediapipe_missing

    return mediapipe_missing()  # installed, but perhaps another release than the one the backend needs


def _realphoto_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.demo.realphoto import MANIFEST, REALPHOTO_DIRNAME

    base = root / REALPHOTO_DIRNAME
    path = base / MANIFEST
    if not path.is_file():
        # Say why only when it is true here: the pose extra is tried for real (an import), not assumed.
        from dlcr.demo.realphoto import available_photos

        why = pose_extra_missing()
        if why is None and not available_photos():
            why = "no photograph is installed (pip install scikit-image; matplotlib ships grace_hopper.jpg)"
        raise Skip(f"the real-photo stage did not run (no {path}; "
                   + (f"it cannot run here: {why})" if why else
                      "everything it needs is installed here: re-run `dlcr demo` on this folder to add it)"))
    m = _read_json(path)
    if not isinstance(m, Mapping):
        raise InputError(f"{path} does not hold an object")
    if m.get("status") != "ok":
        raise Skip(str(m.get("reason") or f"the real-photo stage did not finish ({path} has status "
                                            f"{m.get('status')!r})"))
    rows = [r for r in m.get("photos") or [] if isinstance(r, Mapping)]
    if not rows:
        raise Skip(f"the real-photo manifest {path} lists no photograph")
    secs = m.get("seconds") if isinstance(m.get("seconds"), Mapping) else {}
    timing = ", ".join(f"{_e(k)} {_fmt_s(_num(v))}" for k, v in secs.items())
    credits = "; ".join(_e(r.get("credit", r.get("name", "?"))) for r in rows)
    out = [f'<p class="expl">Stage 1 on real photographs ({credits}): the person is cropped with the pose '
           "model's person mask and the crops go through the generation stages as a tiny dataset: parsed by the "
           "<code>pose</code> backend (mediapipe's bundled pose landmarks and person mask turned into LIP labels "
           "by body geometry), described by the <code>rule</code> captioner, planned and repainted by "
           f"<code>recolor</code> with {_e(m.get('k', '?'))} outfits drawn from a fixed list. "
           f"Images without a usable pose use a fixed-geometry fallback: {_e(m.get('fallbacks', 0))} here. "
           f"Times: {timing or 'not recorded'}. Both are upper-body portraits, so only the upper garment "
           "is repainted.</p>"]
    for r in rows:
        src, mask = safe_join(base, str(r["original"])), safe_join(base, str(r["mask"]))
        name = str(r.get("name", src.stem))
        figs = [f'<figure class="src">{_img(assets.image(src), name)}<figcaption><b>crop</b> {_e(name)}<br>'
                f'{_e(r.get("caption", ""))}</figcaption></figure>',
                f'<figure class="src">{_img(assets.image(src, overlay=mask), "mask " + name)}<figcaption><b>'
                f'{"pose mask" if r.get("pose_found") else "fallback mask (no pose)"}</b><br>{_PART_LEGEND}'
                "</figcaption></figure>"]
        for v in r.get("variants") or []:
            if isinstance(v, Mapping) and isinstance(v.get("file"), str):
                prompt = str(v.get("prompt", ""))
                figs.append(f'<figure>{_img(assets.image(safe_join(base, v["file"])), prompt)}<figcaption>'
                            f"{_e(prompt)}</figcaption></figure>")
        out.append(f'<div class="genrow photorow">{"".join(figs)}</div>')
    return "\n".join(out)
