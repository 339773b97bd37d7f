"""``synthcc``: a procedural, deterministic clothes-changing re-id world (docs/design.md §6).

``render_world(out_dir, ids=150, seed=0)`` writes ``out_dir/synthcc/{train,query,test}`` images in
LTCC naming, LIP ground-truth label maps and outfit descriptions; ``contact_sheet`` draws a grid of
a few people in all their outfits across cameras, to look at.
"""

from dlcr.synth.world import VERSION, WorldParams, build_world
from dlcr.synth.writer import NAME_RE, contact_sheet, render_world

__all__ = ["NAME_RE", "VERSION", "WorldParams", "build_world", "contact_sheet", "render_world"]
