"""Inpainting backends; build them by name through ``dlcr.generation.inpainting.create_inpainter``."""
