"""The generation pipeline: parsing (masks), descriptions, job planning, inpainting, runners.

Submodules are imported explicitly (``from dlcr.generation.parsing import clothes_mask``); this
package imports nothing heavy on its own.
"""
