"""dlcr: clothes-changing person re-identification with diffusion-generated clothes variants."""

__version__ = "0.1.0"
