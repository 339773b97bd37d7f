"""``dlcr demo``: the whole of DLCR on the embedded synthetic world, sized for 2 CPU cores.

Stages: render synthcc → hold out a few training identities as a validation split → clothes masks from
the real offline ``pose`` parser (mediapipe; the world's ground-truth label maps with ``masks="truth"``,
or when the pose model is not installed, with a logged reason) and their IoU against the ground truth →
rule descriptions (offline, labelled) → plan K target outfits per training image → inpaint them
(``recolor`` by default; ``tiny`` runs the real diffusers code path with tiny random weights,
meaningless images) → train every arm with the same recipe, seeds and epochs, evaluating the validation
split every ``eval_every`` epochs (the learning curves) → evaluate each arm once on the test set
(standard / same-clothes / clothes-changing), the progressive model again with prediction refinement
on ``l`` generated variants of every query → ``results.json`` + ``report.html``.

The arms are the rows of the paper's Table A1 (:data:`dlcr.ablation.TABLE_A1`), each adding one component, plus the
concatenated arm. Rows 2-4 pair every real image with one of its variants in each batch with no
curriculum (``sampler.schedule=all``), row 5 adds the progressive curriculum, row 6 is row 5's model
evaluated with prediction refinement:

1. ``baseline``: the originals only;
2. ``dlcr_unmasked``: generated data without the ID-preserving mask ("standard diffusion": the whole
   person repainted, identity cues included; ``generate.mask_region=person``, data in ``work_unmasked/``);
3. ``dlcr_random_prompts``: the clothes mask, random garment-vocabulary prompts instead of the
   dataset's outfits (Table A3 row 1; ``generate.prompt_source=vocabulary``, data in ``work_random/``);
4. ``dlcr_paired``: the clothes mask and the dataset's own described outfits (``work/``);
5. ``dlcr_progressive``: + progressive learning;
6. ``dlcr_progressive_refined``: + prediction refinement.

``dlcr_concat``: the data of row 4, concatenated to the originals (no pairing).

The baseline's and the progressive model's test evaluations are also k-reciprocal re-ranked
(:data:`~dlcr.ablation.RERANKED_ARMS`, not rows of Table A1): ``baseline_reranked``,
``dlcr_progressive_reranked``, ``dlcr_progressive_reranked_refined`` (re-rank, then refine) and
``dlcr_progressive_refined_reranked`` (refine, then re-rank), arms of ``results.json`` like the others.

``results.json`` keys (per arm, as before: the six metrics, their ``_std`` over seeds, ``seed``,
``seeds``, ``per_seed``):

- ``table_a1``: ``{"rows": [{"row", "arm", "name", "mask_region", "prompt_source", "sampler",
  "refine", <metric>, <metric>_std, ...}, ...], "concat": {same fields}, "metrics": [...], "seeds":
  [...], "epochs": E}``, the table shaped like the paper's Table A1 (mean ± std over seeds);
- ``curves``: ``{arm: {"epochs": [...], "val_top1", "val_map", "val_cc_top1", "val_cc_map", "loss"
  (lists, mean over seeds, fractions), the same with ``_std``, "per_seed": {seed: [{"epoch", ...}]}}}``
  for every trained arm: validation metrics every ``eval_every`` epochs (never the test set);
- ``meta.masks``: ``{"source": "pose" | "truth", "requested", "reason", "fallbacks", "iou": {"clothes",
  "person", "upper", "lower", "footwear", "images"}}`` (mean per-image IoU of the demo's masks
  against the world's ground truth; 1.0 with ``truth``);
- ``meta.validation``: ``{"ids", "query", "gallery", "eval_every", "pids"}``.

Every arm of one seed shares the world, the masks, the descriptions and the recipe; only the data use
(and, for rows 2 and 3, the generated data) differs.
"""

from dlcr.demo.masks import choose_masks, mask_iou  # noqa: F401
from dlcr.demo.run import run_demo, table_a1  # noqa: F401
from dlcr.demo.settings import MASK_SOURCES, DemoSettings, arm_config  # noqa: F401
from dlcr.demo.validation import holdout_validation, validation_data  # noqa: F401
