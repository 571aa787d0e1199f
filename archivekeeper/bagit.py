"""BagIt (RFC 8493) written and read by hand: ``bagit.txt``, ``bag-info.txt``, ``manifest-sha256.txt``
and ``tagmanifest-sha256.txt`` around a ``data/`` payload.

Every line is deterministic (sorted paths, fixed tag order, LF line ends), so the same payload and
info give the same tag files. Paths are relative, ``/``-separated, with CR, LF and ``%``
percent-encoded as section 2.1.3 asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BAGIT_VERSION = "1.0"
BAGIT_TXT = "bagit.txt"
BAG_INFO_TXT = "bag-info.txt"
MANIFEST_TXT = "manifest-sha256.txt"
TAGMANIFEST_TXT = "tagmanifest-sha256.txt"
PAYLOAD_DIR = "data"


@dataclass(frozen=True, slots=True)
class Entry:
    """A file as a BagIt manifest lists it."""

    path: str
    size: int
    sha256: str


def encode_path(path: str) -> str:
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_path(path: str) -> str:
    return path.replace("%0D", "\r").replace("%0d", "\r").replace("%0A", "\n").replace("%0a", "\n").replace("%25", "%")


def manifest_text(entries: Iterable[Entry]) -> str:
    """``checksum  path`` lines, sorted by path."""
    return "".join(f"{e.sha256}  {encode_path(e.path)}\n" for e in sorted(entries, key=lambda e: e.path))


def parse_manifest(text: str) -> dict[str, str]:
    """A manifest's ``{path: checksum}``; raises ValueError on a malformed line."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"line {number} is not 'checksum path': {line!r}")
        out[decode_path(parts[1].strip())] = parts[0].lower()
    return out


def bagit_txt() -> str:
    return f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n"


def payload_oxum(entries: Sequence[Entry]) -> str:
    return f"{sum(e.size for e in entries)}.{len(entries)}"


def bag_info_text(info: Mapping[str, str], payload: Sequence[Entry]) -> str:
    """``Label: value`` lines (values on one line), then ``Payload-Oxum``."""
    lines = [f"{label}: {' '.join(str(value).split())}" for label, value in info.items()]
    lines.append(f"Payload-Oxum: {payload_oxum(payload)}")
    return "\n".join(lines) + "\n"


def parse_bag_info(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    label = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and label:
            info[label] += " " + line.strip()
            continue
        label, _, value = line.partition(":")
        label = label.strip()
        info[label] = value.strip()
    return info


def _write(root: Path, name: str, text: str) -> Entry:
    data = text.encode("utf-8")
    (root / name).write_bytes(data)
    return Entry(name, len(data), hashlib.sha256(data).hexdigest())


def write_bag(root: Path, payload: Sequence[Entry], info: Mapping[str, str],
              other_tag_files: Sequence[Entry] = ()) -> list[Entry]:
    """Write the BagIt tag files around ``root/data`` and return them (tagmanifest last).

    ``payload`` paths start with ``data/``; ``other_tag_files`` (e.g. ``manifest.json``) are already
    written at the top of the bag and are listed in the tag manifest.
    """
    for entry in payload:
        if not entry.path.startswith(PAYLOAD_DIR + "/"):
            raise ValueError(f"payload path outside data/: {entry.path}")
    tags = [
        _write(root, BAGIT_TXT, bagit_txt()),
        _write(root, BAG_INFO_TXT, bag_info_text(info, payload)),
        _write(root, MANIFEST_TXT, manifest_text(payload)),
    ]
    tags.extend(other_tag_files)
    tags.append(_write(root, TAGMANIFEST_TXT, manifest_text(tags)))
    return tags
