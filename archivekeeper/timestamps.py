"""Capture times: 14-digit archive timestamps, ISO-8601, WARC-Date and HTTP dates, all in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .errors import ConfigError

_DIGITS = re.compile(r"^\d{4,14}$")


def parse_timestamp(value: str) -> datetime:
    """Parse a 4–14 digit archive timestamp (``20210304050607``); short ones are padded low."""
    if not _DIGITS.match(value):
        raise ConfigError(f"not an archive timestamp (4 to 14 digits): {value!r}")
    padded = value + "0101000000"[len(value) - 4 :] if len(value) < 14 else value
    try:
        return datetime.strptime(padded, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"not a valid date: {value!r}") from None


def parse_iso(value: str) -> datetime:
    """Parse ISO-8601 (``2021-03-04``, ``2021-03-04T05:06:07Z``, with fractions or offsets) as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not an ISO-8601 date: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_user_date(value: str, *, end: bool = False) -> datetime:
    """Parse a date a user typed: ``2021``, ``2021-06``, ``2021-06-30``, ISO-8601 or 4–14 digits.

    With ``end=True`` a partial date means the last second it covers (``2021`` → 2021-12-31T23:59:59Z),
    as the CDX API treats ``to=``.
    """
    text = value.strip()
    digits = text.replace("-", "") if re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", text) else text
    if _DIGITS.match(digits):
        if len(digits) % 2:
            raise ConfigError(f"not a date (give YYYY, YYYY-MM, YYYY-MM-DD or 14 digits): {value!r}")
        if end and len(digits) < 14:
            return parse_timestamp(_pad_end(digits))
        return parse_timestamp(digits)
    return parse_iso(text)


def _pad_end(digits: str) -> str:
    year = int(digits[:4])
    month = int(digits[4:6]) if len(digits) >= 6 else 12
    if len(digits) >= 8:
        day = int(digits[6:8])
    else:
        import calendar

        day = calendar.monthrange(year, month)[1]
    full = f"{year:04d}{month:02d}{day:02d}" + digits[8:]
    return full + "235959"[len(full) - 8 :]


def parse_warc_date(value: str) -> datetime:
    """Parse a WARC-Date (W3C ISO-8601, second or finer precision, always UTC)."""
    return parse_iso(value)


def parse_http_date(value: str) -> datetime:
    """Parse an RFC 1123 date such as a ``Memento-Datetime`` header."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not an HTTP date: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_timestamp(moment: datetime) -> str:
    """The 14-digit archive form of a time."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def to_iso(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, to the second (the catalog's ``capture_time``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_http_date(moment: datetime) -> str:
    """RFC 1123 form, as Memento-Datetime writes it."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
