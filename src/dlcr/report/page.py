"""The page every report is: one self-contained HTML file (inline CSS, no scripts) whose sections
are built one by one; a section that cannot be built becomes a note saying why (:func:`write_page`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dlcr.errors import DlcrError
from dlcr.io.atomic import atomic_write_text
from dlcr.report.common import Report, Skip, _e, _note
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

# Errors a section may hit on a damaged or partial demo folder; anything else is a bug and raises.
SECTION_ERRORS = (DlcrError, OSError, ValueError, KeyError, IndexError, TypeError)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  background:#f6f7f9;color:#1d2330;line-height:1.4}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{margin:8px 0 4px;font-size:28px} h2{margin:32px 0 8px;font-size:21px;border-bottom:2px solid #d5dae3;
  padding-bottom:4px} h3{font-size:16px;margin:18px 0 6px}
nav a{margin-right:14px;color:#2b5cab;text-decoration:none} .sub{color:#5b6475;margin:0 0 8px}
p.note{background:#fff5d6;border-left:4px solid #e0b000;padding:6px 10px;margin:8px 0;color:#5a4500}
p.expl{color:#4a5263;font-size:14px;margin:4px 0 10px;max-width:1000px}
table{border-collapse:collapse;background:#fff;font-size:14px;margin:6px 0 12px}
th,td{border:1px solid #d5dae3;padding:4px 10px;text-align:right;white-space:nowrap}
th{background:#eef1f6} td.arm,th.arm{text-align:left} td strong{color:#0b3d91}
.cols{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.genrow{display:flex;gap:6px;align-items:flex-start;background:#fff;border:1px solid #d5dae3;
  border-radius:6px;padding:8px;margin:8px 0;overflow-x:auto}
figure{margin:0;flex:0 0 auto}
.genrow figure{width:88px} .genrow img{height:160px;width:80px;object-fit:contain}
.genrow img.px{image-rendering:auto}
figcaption{font-size:10.5px;color:#333;margin-top:3px;word-wrap:break-word;line-height:1.25}
figcaption b{color:#111}
.genrow figure.src figcaption{color:#0b3d91}
.genrow.photorow figure{width:144px} .genrow.photorow img{width:136px;height:170px}
img.px{image-rendering:pixelated;background:#ddd}
.panels{display:flex;flex-wrap:wrap;gap:12px}
.query{display:flex;gap:12px;background:#fff;border:1px solid #d5dae3;border-radius:6px;padding:8px;
  flex:0 0 auto}
.query>figure{width:80px} .query img{height:128px;width:64px;object-fit:contain}
.ranks{display:flex;flex-direction:column;gap:6px}
.rankrow{display:flex;gap:6px;align-items:center}
.rankrow .lab{width:92px;font-size:12px;font-weight:600;line-height:1.2}
.rankrow figure{width:66px;text-align:center}
.q img{outline:4px solid #3b6fd6;outline-offset:-2px}
.hit img{outline:4px solid #1a9850;outline-offset:-2px}
.miss img{outline:4px solid #d73027;outline-offset:-2px}
.empty img{opacity:.3}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}
img.plot{max-width:100%;background:#fff;border:1px solid #d5dae3}
footer{color:#7a8292;font-size:12px;margin-top:40px}
"""


Section = tuple[str, str, Callable[[], str]]


def write_page(root: Path, *, kind: str, title: str, subtitle: str, sections: Sequence[Section],
               t0: float | None = None) -> Report:
    """Build every section (a :class:`Skip` or a damaged input makes that section a note saying why,
    never the page fail) and write ``root/report.html``."""
    t0 = time.perf_counter() if t0 is None else t0
    body, built, skipped = [], [], []
    for sid, heading, fn in sections:
        try:
            content = fn()
            built.append(sid)
        except Skip as e:
            content = _note(f"skipped: {e}")
            skipped.append((sid, str(e)))
        except SECTION_ERRORS as e:
            log.warning("report: section %r skipped: %s", sid, e)
            content = _note(f"skipped: {e}")
            skipped.append((sid, str(e)))
        body.append(f'<section id="{sid}"><h2>{_e(heading)}</h2>\n{content}\n</section>')
    nav = "".join(f'<a href="#{sid}">{_e(heading)}</a>' for sid, heading, _ in sections)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub">{_e(subtitle)}</p><nav>{nav}</nav>'
        + "\n".join(body)
        + f"<footer>Written by <code>dlcr report</code> in {time.perf_counter() - t0:.1f} s.</footer>"
        "</main></body></html>\n"
    )
    out = root / "report.html"
    atomic_write_text(out, page)
    log.info("report written to %s", out)
    return Report(path=out, kind=kind, built=tuple(built), skipped=tuple(skipped))
