"""Test fixtures built offline, in seconds, in the exact on-disk formats public checkpoints ship in.

Each module writes tiny random-weight models laid out like the real ones (folder structure, config
and processor files, weight file formats), read from the public repositories, not from dlcr's own
builders, so that the tests exercise what a researcher points dlcr at.
"""
