"""Swatches: a PNG bar per image (segment widths proportional to shares, labelled with name and
hex) and a contact sheet for the folder (thumbnails beside their bars). Drawn with OpenCV."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_bytes

BAR_W, BAR_H, THUMB = 600, 64, 64


def _hex_to_bgr(hex_: str) -> tuple[int, int, int]:
    h = hex_.lstrip("#")
    return int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)


def draw_bar(colors: Sequence[Mapping[str, Any]], other_share: float = 0.0, width: int = BAR_W,
             height: int = BAR_H) -> Any:
    """A BGR uint8 image: one segment per colour, then a grey 'other' segment if any."""
    import cv2
    import numpy as np

    bar = np.full((height, width, 3), 255, np.uint8)
    segments = [(c["name"], c["hex"], c["share"]) for c in colors]
    if other_share and other_share > 0:
        segments.append(("other", "#dddddd", other_share))
    total = sum(s for _, _, s in segments) or 1.0
    x = 0
    for i, (name, hex_, share) in enumerate(segments):
        x1 = width if i == len(segments) - 1 else x + int(round(width * share / total))
        bgr = _hex_to_bgr(hex_)
        cv2.rectangle(bar, (x, 0), (max(x, x1 - 1), height - 1), bgr, thickness=-1)
        luma = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
        ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
        if x1 - x >= 40:
            cv2.putText(bar, name, (x + 4, height // 2 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, ink,
                        1, cv2.LINE_AA)
            cv2.putText(bar, f"{hex_} {share:.0%}", (x + 4, height // 2 + 14),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.38, ink, 1, cv2.LINE_AA)
        x = x1
    return bar


def swatch_name(index: int, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60]
    return f"{index:05d}_{stem}.png"


def write_swatch(out_dir: Path, index: int, record: Mapping[str, Any]) -> Path | None:
    """Write the bar PNG for one record (None for a record with an error)."""
    import cv2

    if record.get("error"):
        return None
    ok, buf = cv2.imencode(".png", draw_bar(record["colors"], record.get("other_share") or 0))
    return write_bytes(out_dir / swatch_name(index, record["path"]), buf.tobytes()) if ok else None


def write_contact_sheet(out_dir: Path, records: Sequence[Mapping[str, Any]],
                        max_rows: int = 500) -> Path | None:
    """Thumbnails beside their bars, one row per image (the first ``max_rows`` images)."""
    import cv2
    import numpy as np

    from mltk._imaging import decode_image, read_image_bytes
    from mltk.errors import InputError

    rows = []
    for rec in records:
        if rec.get("error"):
            continue
        if len(rows) >= max_rows:
            break
        try:
            data, fmt = read_image_bytes(rec["path"])
            img = decode_image(data, fmt, min_side=THUMB)
            thumb = cv2.cvtColor(cv2.resize(img.rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA),
                                 cv2.COLOR_RGB2BGR)
        except InputError:
            thumb = np.full((THUMB, THUMB, 3), 200, np.uint8)
        bar = draw_bar(rec["colors"], rec.get("other_share") or 0, BAR_W, THUMB)
        label = np.full((THUMB, 220, 3), 255, np.uint8)
        cv2.putText(label, Path(rec["path"]).name[:28], (4, THUMB // 2 + 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        row = np.hstack([thumb, label, bar])
        rows.append(np.vstack([row, np.full((4, row.shape[1], 3), 255, np.uint8)]))
    if not rows:
        return None
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    return write_bytes(out_dir / "contact_sheet.png", buf.tobytes()) if ok else None


def write_swatches(out_dir: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [p for i, rec in enumerate(records) if (p := write_swatch(out, i, rec))]
    sheet = write_contact_sheet(out, records)
    return written + ([sheet] if sheet else [])
