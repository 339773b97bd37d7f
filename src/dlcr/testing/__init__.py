"""Importable test helpers: tiny components built offline from configs (no downloads).

Import the module you need, e.g. ``from dlcr.testing.tiny import tiny_segformer``; nothing heavy is
imported here.
"""
