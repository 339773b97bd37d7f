"""Datasets (``dlcr.data.datasets``), transforms, samplers and loaders.

Kept empty on purpose: importing ``dlcr.data`` must not pull in torch.
"""
