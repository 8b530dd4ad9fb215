"""mltk: command-line machine-learning utilities for product images and marketplace data."""

__version__ = "0.1.0"
