"""Payload digests in the CDX convention: ``sha1:`` + base32 of the SHA-1."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import BinaryIO

_B32_LEN = 32


def sha1_base32(data: bytes) -> str:
    """``sha1:BASE32`` of ``data``."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def format_sha1(raw_digest: bytes) -> str:
    """``sha1:BASE32`` of a finished SHA-1 digest."""
    return "sha1:" + base64.b32encode(raw_digest).decode("ascii")


def normalize_digest(value: str | None) -> str | None:
    """Bring a digest from a CDX line or a WARC header into ``sha1:BASE32`` form.

    Accepts base32 with or without ``sha1:``, hex SHA-1 (some tools write it), and other
    algorithms (kept as ``alg:value``). ``-`` or empty means no digest.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or text == "-":
        return None
    alg, sep, rest = text.partition(":")
    if not sep:
        alg, rest = "sha1", text
    alg = alg.lower().replace("-", "")
    if alg == "sha1":
        if len(rest) == 40 and all(c in "0123456789abcdefABCDEF" for c in rest):
            return format_sha1(binascii.unhexlify(rest))
        return "sha1:" + rest.upper()
    return f"{alg}:{rest}"


def sha256_file(path: str, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class HashingReader:
    """A read-only file wrapper that feeds every byte read into SHA-256 and counts them."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            view = memoryview(buffer)[:count]
            self.sha256.update(view)
            self.bytes_read += count
        return int(count or 0)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.bytes_read

    def close(self) -> None:
        self._raw.close()
