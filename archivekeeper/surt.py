"""SURT keys (Sort-friendly URI Reordering Transform), as CDX servers write ``urlkey``.

``http://www.Example.com:80/a/B?z=1&a=2#top`` → ``com,example)/a/b?a=2&z=1``: scheme, ``www``,
default port, user info and fragment dropped, host labels reversed, the rest lower-cased and the
query sorted. Host and domain matching work on this key.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import ConfigError

_WWW = re.compile(r"^www\d*\.")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split(url: str) -> tuple[str, str, str, str]:
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"not a valid URL: {url!r}") from None
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"not a valid URL (no host): {url!r}")
    scheme = parts.scheme.lower()
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host_key = _host_key(host) + f":{port}"
    else:
        host_key = _host_key(host)
    return host_key, parts.path or "/", parts.query, scheme


def _host_key(host: str) -> str:
    host = _WWW.sub("", host)
    if re.fullmatch(r"[\d.]+", host):
        return host
    return ",".join(reversed(host.split(".")))


def surt(url: str) -> str:
    """The SURT ``urlkey`` of an absolute URL (scheme optional)."""
    host_key, path, query, _ = _split(url)
    key = f"{host_key}){path.lower()}"
    if query:
        key += "?" + "&".join(sorted(query.lower().split("&")))
    return key


def host_key(url: str) -> str:
    """The SURT host part of a URL (``com,example``), for host and domain matching."""
    return _split(url)[0]


def match_range(url: str, match: str) -> tuple[str, str]:
    """The half-open ``urlkey`` range ``[low, high)`` that a CDX ``matchType`` covers.

    ``exact`` is a one-key range; ``prefix`` every key starting with the URL's key; ``host``
    every path of that host; ``domain`` the host and all its subdomains.
    """
    if match == "exact":
        key = surt(url)
        return key, key + "\x00"
    if match == "prefix":
        key = surt(url)
        return key, key + "\U0010ffff"
    if match == "host":
        key = host_key(url) + ")"
        return key, key + "\U0010ffff"
    if match == "domain":
        key = host_key(url)
        return key, key + "-"  # ')' and ',' sort before '-': covers 'key)' and 'key,'
    raise ConfigError(f"unknown match type {match!r} (exact, prefix, host or domain)")
