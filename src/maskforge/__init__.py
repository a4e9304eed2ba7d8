"""maskforge: staged, cached weakly-supervised semantic segmentation."""

__version__ = "0.1.0"
