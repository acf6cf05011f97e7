"""The bytes of an email as Django's EmailMultiAlternatives gives them to smtplib, built
directly for the common message: Django's path (email.mime objects, then the compat32
generator folding each header through email.header.Header) cost more CPU than the rest of
a live send together (bench/NOTES.md, 2026-12-03).

`smtp_bytes` covers only what it can reproduce exactly: every header an ASCII line short
enough never to be folded or encoded, every body line within RFC 5322's 998 bytes (so
Django would pick 7bit or 8bit, not quoted-printable), a plain-text part. Anything else
gives None and the caller sends through Django. tests/delivery/test_mime.py compares the
two byte for byte (Date and boundary aside) over generated messages, and the SMTP tests
check what the server receives."""

from __future__ import annotations

import functools
import random
import re
import sys
from email.utils import formatdate

from django.conf import settings
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, sanitize_address

# compat32 folds a header whose line would pass 78 characters; a shorter one stays as is.
_MAX_HEADER_LINE = 78
# A header value that Django passes on as is (ASCII) and email.header.Header leaves alone:
# printable ASCII, single spaces between words, none at either end.
_PLAIN_HEADER = re.compile(r"[!-~]+(?: [!-~]+)*")
# An addr-spec that sanitize_address returns unchanged: a dot-atom local part (nothing to
# quote) at an ASCII domain (nothing for IDNA to encode; labels of at most 63 characters).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(
    rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}})*"
)
# Line breaks as str.splitlines() sees them (Django's long-line test) beyond \r and \n,
# which the generator would not turn into CRLF.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


@functools.lru_cache(maxsize=8)
def _envelope_sender(from_email: str) -> str:
    """MAIL FROM as Django's SMTP backend gives it (the From header keeps the text as is)."""
    return sanitize_address(from_email, "utf-8")


def _header(name: str, value: str) -> str | None:
    line = f"{name}: {value}"
    if len(line) > _MAX_HEADER_LINE or not _PLAIN_HEADER.fullmatch(value):
        return None
    return line


def _part(subtype: str, content: str) -> tuple[list[str], bytes] | None:
    """The MIME headers and CRLF body of one text part (Django's SafeMIMEText, utf-8)."""
    if _OTHER_BREAKS.search(content):
        return None
    body = _NEWLINES.sub("\r\n", content).encode("utf-8")
    if any(len(line) > RFC5322_EMAIL_LINE_LENGTH_LIMIT for line in body.split(b"\r\n")):
        return None
    headers = [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "MIME-Version: 1.0",
        f"Content-Transfer-Encoding: {'7bit' if body.isascii() else '8bit'}",
    ]
    return headers, body


def smtp_bytes(
    *, from_email: str, to: str, subject: str, text: str, html: str, message_id: str
) -> tuple[str, bytes] | None:
    """The envelope sender and the message bytes (CRLF lines) that Django's SMTP backend
    would send for EmailMultiAlternatives(subject, text, from_email, [to], headers=
    {"Message-ID": message_id}) with `html` attached as text/html when given, Date and
    multipart boundary aside (both fresh per message in Django too); None when the message
    is not one this function reproduces exactly, so the caller uses Django."""
    # Django's SafeMIMEText picks 7bit/8bit only for the exact charset name "utf-8".
    if settings.DEFAULT_CHARSET != "utf-8" or not text or not _PLAIN_ADDRESS.fullmatch(to):
        return None
    lines = [
        _header("Subject", subject),
        _header("From", from_email),
        _header("To", to),
        f"Date: {formatdate(localtime=settings.EMAIL_USE_LOCALTIME)}",
        _header("Message-ID", message_id),
    ]
    plain = _part("plain", text)
    rich = _part("html", html) if html else None
    if plain is None or (html and rich is None) or None in lines:
        return None
    top: list[str]
    if rich is None:
        top, body = plain
    else:
        top, body = _alternative(plain, rich)
    head = "\r\n".join([*top, *lines]).encode("ascii")  # type: ignore[list-item]
    return _envelope_sender(from_email), head + b"\r\n\r\n" + body


def _alternative(
    plain: tuple[list[str], bytes], rich: tuple[list[str], bytes]
) -> tuple[list[str], bytes]:
    """multipart/alternative of the two parts, as email.generator writes it."""
    parts = [("\r\n".join(h) + "\r\n\r\n").encode("ascii") + b for h, b in (plain, rich)]
    while True:
        # email.generator's boundary: 15 "=", a random 19-digit number, "=="; one that
        # occurs in the parts is drawn again.
        boundary = f"==============={random.randrange(sys.maxsize):019d}=="
        if all(boundary.encode("ascii") not in part for part in parts):
            break
    dash = b"--" + boundary.encode("ascii")
    body = dash + b"\r\n" + parts[0] + b"\r\n" + dash + b"\r\n" + parts[1]
    body += b"\r\n" + dash + b"--\r\n"
    headers = [
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
        "MIME-Version: 1.0",
    ]
    return headers, body
