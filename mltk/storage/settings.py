"""Typed settings of fetched models (configs/storage.yaml, MLTK_STORAGE_*)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import ClassVar

from mltk._settings import Settings, integer, number, optional, setting, text
from mltk.errors import InputError


@dataclasses.dataclass(frozen=True)
class StorageSettings(Settings):
    """Where fetched models are cached and how large one may be; checked when made, frozen."""

    SECTION: ClassVar[str] = "storage"

    cache_dir: str | None = setting(None, optional(text()),
                                    "cache of fetched and unpacked models (None: "
                                    "$XDG_CACHE_HOME/mltk/models, else ~/.cache/mltk/models)")
    max_mb: float = setting(20480.0, number(0.0, low_open=True),
                            "largest model, downloaded and unpacked, in MB")
    max_files: int = setting(100_000, integer(1), "most files in one model folder or archive")

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)

    def check_files(self, what: str, files: int) -> None:
        """An error naming ``what`` (a model's URL or URI) when ``files`` is over the limit."""
        if files > self.max_files:
            raise InputError(f"{what}: more than {self.max_files:,} files (storage `max_files`)")

    def check_bytes(self, what: str, size: int) -> None:
        """An error naming ``what`` when ``size`` bytes is over the limit."""
        if size > self.max_bytes:
            raise InputError(f"{what}: {_mb(size)} MB, over the limit of {_mb(self.max_bytes)} "
                             "MB (storage `max_mb`)")

    @property
    def cache(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "mltk" / "models"


def _mb(n: int) -> str:
    mb = n / 2**20
    return f"{mb:,.0f}" if mb >= 10 else f"{mb:.3g}"
