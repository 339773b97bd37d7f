"""Training engine: the epoch loop (``trainer``) and checkpoints (``checkpoint``)."""
