"""Opening a report in a real browser: headless Chromium, from the file system, networking off.

No skip: the report tests fail when Chromium is missing (``.ci/run`` installs Debian's
``chromium``; ``apt-get install chromium`` does it by hand), as a report nobody has seen
rendered is not tested.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((p for p in (os.environ.get("MLTK_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
# Any request that is not a file or data URI goes to a dead proxy and an unresolvable host.
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1200,1600"]
SIZE_LIMIT = 2 * 1024 * 1024


@dataclasses.dataclass
class Page:
    dom: str  # the document after its script ran (--dump-dom)
    text: str  # its visible text, tags stripped, whitespace collapsed
    console: list[str]  # messages the page logged (errors, blocked loads)
    screenshot: object  # PIL image
    images: list[object]  # every <img>, decoded


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM, ("Chromium is required for the report tests: apt-get install chromium "
                      "(.ci/run installs it)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def decode_images(source: str) -> list[object]:
    """Every <img> of ``source`` decoded with PIL: each must be a data URI."""
    from PIL import Image

    images = []
    for src in re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", source):
        assert src.startswith("data:image/"), f"an image that is not embedded: {src[:80]}"
        head, _, payload = src.partition(",")
        assert head.endswith(";base64"), head
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:  # pragma: no cover - the assertion says it
            raise AssertionError(f"bad base64 in an image: {exc}") from None
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.width > 0 and img.height > 0
        images.append(img)
    return images


def open_report(path: Path, tmp: Path, size_limit: int = SIZE_LIMIT) -> Page:
    """Open ``path`` as a user would (file://) and check what holds for every report: under
    the size limit, nothing referenced over the network, alt text on every image, no console
    message (a blocked or failed load, a script error), every image embedded and decodable,
    a screenshot that is not blank, and the sorting script run (its buttons are in the
    DOM)."""
    from PIL import Image, ImageStat

    source = path.read_text(encoding="utf-8")
    assert path.stat().st_size < size_limit, f"{path}: {path.stat().st_size:,} bytes"
    assert not re.search(r"https?://", source), re.search(r".{40}https?://.{40}", source)
    assert "<th" in source or "<table" not in source
    images = decode_images(source)
    tags = re.findall(r"<img\b[^>]*>", source)
    assert all(re.search(r'\balt="[^"]+"', tag) for tag in tags), "an image without alt text"
    url = path.resolve().as_uri()
    shot = tmp / f"{path.parent.name}-{path.stem}.png"
    run = _chromium([f"--screenshot={shot}", url], tmp / "profile-shot")
    assert shot.exists(), run.stderr[-2000:]
    dump = _chromium(["--dump-dom", url], tmp / "profile-dom")
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = [line for line in (run.stderr + dump.stderr).splitlines() if "CONSOLE" in line]
    assert console == [], console
    screenshot = Image.open(shot).convert("L")
    stat = ImageStat.Stat(screenshot)
    assert stat.stddev[0] > 10, "the screenshot is blank"
    dark = sum(screenshot.histogram()[:128]) / (screenshot.width * screenshot.height)
    assert dark > 0.005, "the screenshot shows (almost) no text"
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", re.sub(
        r"<(script|style)\b.*?</\1>", " ", dump.stdout, flags=re.S))).split())
    if 'class="sortable"' in source:
        assert '<th scope="col"' in dump.stdout and "<button" in dump.stdout, \
            "the sorting script did not run"
    return Page(dump.stdout, text, console, screenshot, images)
