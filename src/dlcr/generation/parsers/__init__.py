"""Human-parser backends (see :mod:`dlcr.generation.parsing` for the interface and the registry).

``schp`` (SCHP ResNet-101, torch), ``hf_segmentation`` (transformers) and ``folder`` (precomputed
label maps, incl. the synthcc ground truth). Import the submodule you need; nothing heavy is
imported here.
"""
