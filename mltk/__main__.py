"""Allows ``python -m mltk``."""

from mltk.cli import main

if __name__ == "__main__":
    main()
