"""EMDiffuse benchmark: diffusion-based restoration for electron microscopy and its baselines."""

__version__ = "0.1.0"
