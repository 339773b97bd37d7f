"""The names of a work folder's files and folders (see :mod:`dlcr.generation.stages`)::

    <work>/masks/<rel_path>.png      LIP label maps (+ masks/masks.parquet)
    <work>/captions.parquet          one caption per training image
    <work>/outfits.parquet           one outfit per training clothes key
    <work>/jobs.parquet              K inpainting jobs per training image
    <work>/generated/                generated training images + manifest.parquet
    <work>/query_jobs.parquet        l jobs per query image (prediction refinement)
    <work>/query_generated/          generated query variants + manifest.parquet

A leaf module (it imports nothing), so that what reads a work folder need not import the stages.
"""

from __future__ import annotations

MASKS = "masks"
GENERATED = "generated"
QUERY_GENERATED = "query_generated"
JOBS = "jobs.parquet"
QUERY_JOBS = "query_jobs.parquet"
OUTFITS = "outfits.parquet"
CAPTIONS = "captions.parquet"
