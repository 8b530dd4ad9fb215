"""A refusal given before the body has arrived reaches clients that send the whole body before
reading, as Python's urllib does (with ``Connection: close``): the server reads and discards
the rest of the body before closing (nginx's lingering close) instead of resetting the
connection. Real server on loopback, the standard library's client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.test_serve_limits import serve

pytestmark = pytest.mark.slow


def urllib_post(url: str, body, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_urllib_reads_the_413_and_the_401_sent_before_its_body(tmp_path):
    s = serve(tmp_path, "colors", max_body_mb=1, token="s3cret")
    try:
        url = s.url + "/invocations"
        auth = {"Authorization": "Bearer s3cret", "Content-Type": "image/jpeg"}
        big = b"x" * (24 * 1024 * 1024)  # more than the socket buffers hold
        status, doc = urllib_post(url, big, auth)  # Content-Length over max_body_mb
        assert status == 413 and "max_body_mb" in doc["error"], doc
        chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
        status, doc = urllib_post(url, chunks, {**auth, "Transfer-Encoding": "chunked"})
        assert status == 413 and "max_body_mb" in doc["error"], doc  # found while reading
        status, doc = urllib_post(url, big, {"Content-Type": "image/jpeg"})
        assert status == 401 and "token" in doc["error"], doc
        with urllib.request.urlopen(s.url + "/ping", timeout=10) as response:
            assert response.status == 200  # and the server serves on
    finally:
        assert s.stop() == 0, s.log()
