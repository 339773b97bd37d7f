"""Captioner and summariser backends of the description stage (see :mod:`dlcr.generation.describe`).

``rule`` is numpy-only; ``hf`` imports torch / transformers when a backend is created.
"""
