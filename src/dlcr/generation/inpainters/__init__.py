"""Inpainting backends and their registry: ``recolor``, ``diffusers``, ``tiny``.

The interface they implement (:class:`~dlcr.generation.inpainting.InpaintItem`, the ``Inpainter``
protocol, :func:`~dlcr.generation.inpainting.composite`) is :mod:`dlcr.generation.inpainting`; this
package registers the backends in :data:`INPAINTERS` and builds them by name
(:func:`create_inpainter`). A backend module is imported only when the backend is created, so
importing this package stays light (no torch, no diffusers).
"""

from __future__ import annotations

from typing import Any

from dlcr.generation.inpainting import Inpainter
from dlcr.registry import Registry

INPAINTERS: Registry[Any] = Registry("inpainter")


@INPAINTERS.register("recolor")
def _make_recolor(**kwargs: Any) -> Inpainter:
    from dlcr.generation.inpainters.recolor import RecolorInpainter

    return RecolorInpainter(**kwargs)


@INPAINTERS.register("diffusers")
def _make_diffusers(model: str = "runwayml/stable-diffusion-inpainting", **kwargs: Any) -> Inpainter:
    from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter

    return DiffusersInpainter(model, **kwargs)


@INPAINTERS.register("tiny")
def _make_tiny(**kwargs: Any) -> Inpainter:
    from dlcr.generation.inpainters.diffusers_backend import make_tiny_inpainter

    return make_tiny_inpainter(**kwargs)


def create_inpainter(name: str, **kwargs: Any) -> Inpainter:
    """Build the inpainter registered as ``name`` (``recolor``, ``diffusers``, ``tiny``)."""
    return INPAINTERS.create(name, **kwargs)


__all__ = ["INPAINTERS", "create_inpainter"]
