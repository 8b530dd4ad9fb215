"""Broker URLs as they may be shown or stored: never with their password."""

from __future__ import annotations


def redact(url: str, keep_password: bool = True) -> str:
    """``url`` with its password shown as ``***`` (or removed, ``keep_password=False``)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<a broker URL that cannot be parsed>"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    auth = f"{user}:***@" if keep_password else (f"{user}@" if user else "")
    return urlunsplit(parts._replace(netloc=auth + host))
