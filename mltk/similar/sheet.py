"""Contact sheets of duplicate groups: one PNG per group for a person to check.

Each photo is a tile (its representative first, framed green), captioned with its file name
and its score; at most 24 photos a sheet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TILE = 200
CAPTION = 34
PER_ROW = 6
MOST = 24


def _tile(path: str) -> np.ndarray:
    import cv2

    from mltk._imaging import decode_image, read_image_bytes

    canvas = np.full((TILE, TILE, 3), 255, np.uint8)
    try:
        data, fmt = read_image_bytes(path)
        rgb = decode_image(data, fmt, min_side=TILE).rgb
    except Exception:  # noqa: BLE001 - a file that changed since: leave its tile blank
        return canvas
    h, w = rgb.shape[:2]
    scale = TILE / max(h, w)
    small = cv2.resize(rgb, (max(1, int(w * scale)), max(1, int(h * scale))),
                       interpolation=cv2.INTER_AREA)
    y, x = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    canvas[y: y + small.shape[0], x: x + small.shape[1]] = small[:, :, ::-1]
    return canvas


def draw_group(members: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The sheet of one group (BGR): representative first."""
    import cv2

    members = sorted(members, key=lambda r: r["duplicate_of"] is not None)[:MOST]
    rows = (len(members) + PER_ROW - 1) // PER_ROW
    cols = min(len(members), PER_ROW)
    sheet = np.full((rows * (TILE + CAPTION), cols * TILE, 3), 255, np.uint8)
    for n, rec in enumerate(members):
        y, x = (n // PER_ROW) * (TILE + CAPTION), (n % PER_ROW) * TILE
        sheet[y: y + TILE, x: x + TILE] = _tile(rec["path"])
        if rec["duplicate_of"] is None:
            cv2.rectangle(sheet, (x + 1, y + 1), (x + TILE - 2, y + TILE - 2), (0, 160, 0), 3)
        name = Path(rec["path"]).name
        name = name if len(name) <= 28 else name[:12] + "..." + name[-13:]
        label = "representative" if rec["duplicate_of"] is None else f"score {rec['score']:.2f}"
        for line, text in enumerate((name, label)):
            cv2.putText(sheet, text, (x + 4, y + TILE + 14 + 15 * line),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40), 1, cv2.LINE_AA)
    return sheet


def write_sheets(folder: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]
                 ) -> list[Path]:
    """``group_NNNN.png`` for each group in ``records`` (written atomically)."""
    import cv2

    from mltk._atomic import write_bytes

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("group") is not None:
            groups.setdefault(int(rec["group"]), []).append(rec)
    written = []
    for number, members in sorted(groups.items()):
        ok, buf = cv2.imencode(".png", draw_group(members))
        if ok:
            written.append(write_bytes(out / f"group_{number:04d}.png", buf.tobytes()))
    return written
