"""Counting, verifying and inspecting TFRecord files.

Counting reads each record's 12-byte header and seeks past the payload; when the folder's
``manifest.json`` lists a shard with the same size, its count is used without opening the
shard at all. ``verify`` checks every length and data CRC and reports the byte offset of the
first bad record.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.tfrecords.format import decode_example, iter_records, scan

_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}\.tfrecord$")
LABEL_KEYS = ("image/class/label", "label")


def is_tfrecord_name(name: str) -> bool:
    return not name.startswith(".") and (".tfrecord" in name or name.endswith(".tfrecords")
                                         or name.endswith(".record"))


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their TFRecord files) and glob patterns -> sorted unique file paths."""
    out: list[Path] = []
    for p in paths:
        text = os.fspath(p)
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"{text}: no files match")
            out.extend(Path(m) for m in matches if Path(m).is_file())
        elif Path(text).is_dir():
            files = sorted(f for f in Path(text).iterdir() if f.is_file()
                           and is_tfrecord_name(f.name))
            if not files:
                raise InputError(f"{text}: no TFRecord files in this folder")
            out.extend(files)
        elif Path(text).is_file():
            out.append(Path(text))
        else:
            raise InputError(f"{text}: no such file or directory")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def split_of(path: Path) -> str | None:
    m = _SHARD.match(path.name)
    return m.group("split") if m else None


class _Manifests:
    """manifest.json of each folder, loaded once."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, Any] | None] = {}

    def entry(self, path: Path) -> dict[str, Any] | None:
        folder = path.parent.resolve()
        if folder not in self._cache:
            from mltk.tfrecords.building import read_manifest

            try:
                self._cache[folder] = read_manifest(folder)
            except InputError:
                self._cache[folder] = None
        manifest = self._cache[folder]
        if not manifest:
            return None
        return next((s for s in manifest["shards"] if s.get("file") == path.name), None)

    def classes(self, path: Path) -> list[str] | None:
        self.entry(path)
        manifest = self._cache.get(path.parent.resolve())
        return manifest.get("classes") if manifest else None


def count_records(path: str | os.PathLike, verify: bool = False, use_manifest: bool = True,
                  _manifests: _Manifests | None = None) -> dict[str, Any]:
    """One file's record count: ``file, split, records, bytes, ok, error, offset, source``."""
    p = Path(path)
    manifests = _manifests or _Manifests()
    size = p.stat().st_size
    entry = manifests.entry(p) if use_manifest and not verify else None
    split = (entry or {}).get("split") or split_of(p)
    if entry is not None and entry.get("bytes") == size:
        return {"file": os.fspath(p), "split": split, "records": entry["records"], "bytes": size,
                "ok": True, "error": None, "offset": None, "source": "manifest"}
    res = scan(p, verify=verify)
    return {"file": os.fspath(p), "split": split, "records": res.records, "bytes": res.bytes,
            "ok": res.ok, "error": res.error, "offset": res.offset, "source": "scan"}


def count_paths(paths: Sequence[str | os.PathLike], verify: bool = False,
                use_manifest: bool = True) -> list[dict[str, Any]]:
    manifests = _Manifests()
    return [count_records(p, verify, use_manifest, manifests) for p in expand_paths(paths)]


def labels_for(path: Path) -> list[str] | None:
    """Class names from labels.txt beside the file, else from its manifest."""
    txt = path.parent / "labels.txt"
    if txt.is_file():
        return [line.rstrip("\n") for line in txt.read_text(encoding="utf-8").splitlines()]
    return _Manifests().classes(path)


def count_by_label(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Records per class over all files (this parses every record's label)."""
    counts: dict[int, int] = {}
    names: list[str] | None = None
    for p in expand_paths(paths):
        names = names or labels_for(p)
        for i, payload in enumerate(iter_records(p)):
            try:
                example = decode_example(payload)
            except ValueError as exc:
                raise InputError(f"{p}: record {i}: {exc}") from None
            key = next((k for k in LABEL_KEYS if k in example), None)
            if key is None or not example[key][1]:
                raise InputError(f"{p}: record {i} has no label feature "
                                 f"({' or '.join(LABEL_KEYS)})")
            label = int(example[key][1][0])
            counts[label] = counts.get(label, 0) + 1
    return [{"label": label,
             "name": names[label] if names and 0 <= label < len(names) else None,
             "records": n} for label, n in sorted(counts.items())]


def inspect_records(path: str | os.PathLike, n: int = 5,
                    save_images: str | os.PathLike | None = None) -> dict[str, Any]:
    """Feature keys, kinds and shapes of the first ``n`` records; optionally save the images."""
    p = expand_paths([path])[0]
    names = labels_for(p)
    records = []
    for i, payload in enumerate(iter_records(p)):
        if i >= n:
            break
        try:
            example = decode_example(payload)
        except ValueError as exc:
            raise InputError(f"{p}: record {i}: {exc}") from None
        label_key = next((k for k in LABEL_KEYS if k in example), None)
        label = example[label_key][1][0] if label_key and example[label_key][1] else None
        rec = {"index": i, "label": label,
               "label_name": names[label] if names and label is not None
               and 0 <= label < len(names) else None,
               "features": _describe_features(example)}
        if save_images is not None:
            saved_path = _save_image(example, Path(save_images), p, i)
            rec["image"] = os.fspath(saved_path) if saved_path else None
        records.append(rec)
    layout = ("standard" if records and "image/encoded" in records[0]["features"]
              else "raw" if records and "image" in records[0]["features"] else "unknown")
    return {"file": os.fspath(p), "layout": layout, "labels": names, "records": records}


def _describe_features(example: dict[str, tuple[str, list]]) -> dict[str, dict[str, Any]]:
    """Per feature (sorted by key): kind, shape, and its first values unless they are images
    or long byte strings."""
    feats = {}
    for key, (kind, values) in sorted(example.items()):
        info: dict[str, Any] = {"type": kind, "shape": [len(values)]}
        if kind != "bytes":
            info["value"] = values[:8]
        else:
            info["bytes"] = [len(v) for v in values][:4]
            if (key not in ("image/encoded", "image") and values
                    and all(len(v) <= 80 for v in values)):
                info["value"] = [v.decode("utf-8", "replace") for v in values][:4]
        feats[key] = info
    return feats


def _save_image(example: dict[str, tuple[str, list]], out: Path, src: Path, i: int) -> Path | None:
    import cv2
    import numpy as np

    from mltk._atomic import write_bytes

    if "image/encoded" in example and example["image/encoded"][1]:
        img = cv2.imdecode(np.frombuffer(example["image/encoded"][1][0], np.uint8),
                           cv2.IMREAD_COLOR)
    elif "image" in example and example["image"][1]:
        raw = np.frombuffer(example["image"][1][0], np.uint8)
        side = int(round((raw.size / 3) ** 0.5))
        if side * side * 3 != raw.size:
            return None
        img = cv2.cvtColor(raw.reshape(side, side, 3), cv2.COLOR_RGB2BGR)
    else:
        return None
    if img is None:
        return None
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        return None
    return write_bytes(out / f"{src.stem}-{i:05d}.png", buf.tobytes())
