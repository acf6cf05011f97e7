"""delivery/providers/mime.py against Django: the same bytes for every message it builds."""

from __future__ import annotations

import random
import re

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from pytest_django.fixtures import Settings

from delivery.providers.mime import smtp_bytes

# Fresh per message on both paths.
_DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)
_BOUNDARY = re.compile(rb"===============\d{19}==")

# Plain pieces repeated, so that most generated messages are ones it builds.
_SUBJECT_BITS = [
    *["Deadline", "soon", " ", "-", "x" * 20] * 4,
    *["  ", "\t", "Grüße", "=?utf-8?q?x?="],
]
_BODY_BITS = [
    *["Hello", " ", "\n", "Grüße"] * 6,
    "\r\n",
    "\r",
    "Grüße",
    "\u2028",
    "\x0c",
    "From here",
    ".",
    "--===============",
    "x" * 400,
    "ü" * 300,
]
_ADDRESSES = [
    *["alice@example.org"] * 10,
    "Bob.Smith+tag@Mail.Example.COM",
    "o'hara@example.org",
    "a..b@example.org",
    ".alice@example.org",
    "alice@xn--bcher-kva.example",
    "jürgen@example.org",
    "alice@bücher.example",
    "Alice <alice@example.org>",
    "alice@" + "a" * 64 + ".org",
]
# A message it builds.
PLAIN = {
    "from_email": "comcenter@localhost",
    "to": "alice@example.org",
    "subject": "Deadline soon",
    "text": "Hello",
    "html": "",
    "message_id": "<m@localhost>",
}
_SENDERS = [
    *["comcenter@localhost"] * 4,
    "Comcenter <noreply@mail.example.com>",
    "Comcenter Ünïcode <noreply@mail.example.com>",
    "noreply@mail.example.com",
    "A very long display name that makes the From line far too long <noreply@example.com>",
]


def _django(
    *, from_email: str, to: str, subject: str, text: str, html: str, message_id: str
) -> tuple[str, list[str], bytes]:
    """What Django's SMTP backend hands to smtplib.sendmail (backends/smtp.py, _send)."""
    email = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=from_email,
        to=[to],
        headers={"Message-ID": message_id},
    )
    if html:
        email.attach_alternative(html, "text/html")
    return (
        sanitize_address(from_email, "utf-8"),
        [sanitize_address(to, "utf-8")],
        # Django's MIMEMixin.as_bytes takes linesep; the stubs know email.message's only.
        email.message().as_bytes(linesep="\r\n"),  # type: ignore[call-arg]
    )


def _normalised(data: bytes) -> bytes:
    return _BOUNDARY.sub(b"BOUNDARY", _DATE.sub(b"Date: DATE\r\n", data))


def _pieces(rng: random.Random, bits: list[str], most: int) -> str:
    return "".join(rng.choice(bits) for _ in range(rng.randint(0, most)))


def test_it_builds_the_bytes_django_builds_for_every_message_it_accepts() -> None:
    rng = random.Random(20261203)
    built = 0
    for _ in range(3000):
        fields = {
            "from_email": rng.choice(_SENDERS),
            "to": rng.choice(_ADDRESSES),
            "subject": _pieces(rng, _SUBJECT_BITS, 6),
            "text": _pieces(rng, _BODY_BITS, 8),
            "html": rng.choice(["", "<p>Hello</p>", _pieces(rng, _BODY_BITS, 6)]),
            "message_id": f"<msg-{rng.randrange(10**6)}@mail.example.com>",
        }
        fast = smtp_bytes(**fields)
        if fast is None:
            continue
        built += 1
        sender, data = fast
        django_sender, django_recipients, django_data = _django(**fields)
        assert (sender, [fields["to"]]) == (django_sender, django_recipients), fields
        assert _normalised(data) == _normalised(django_data), fields
        assert data.count(b"\r\nDate: ") == 1
    # Many generated messages are of the kinds it declines (a subject with a double space,
    # a long line ...); enough of them are built for the comparison to mean something.
    assert built > 300


def test_it_builds_the_message_a_template_renders() -> None:
    fields = {
        "from_email": "Comcenter <noreply@mail.example.com>",
        "to": "student-7@example.org",
        "subject": "Reminder 3 for student-7",
        "text": "Hello student-7,\n\nThis is reminder number 3.\n",
        "html": "<p>Hello student-7,</p>\n<p>Grüße</p>",
        "message_id": "<0b6e3c1e-5b7a-4f43-9d0e-1f1c2d3e4f50@mail.example.com>",
    }
    fast = smtp_bytes(**fields)

    assert fast is not None
    assert _normalised(fast[1]) == _normalised(_django(**fields)[2])


def test_it_leaves_to_django_what_django_would_encode_or_fold() -> None:
    declined = [
        {"subject": "Grüße"},
        {"subject": "x" * 70},
        {"subject": "Hello\nBcc: mallory@example.net"},
        {"to": "jürgen@example.org"},
        {"to": "alice@bücher.example"},
        {"from_email": "Comcenter Ünïcode <noreply@example.com>"},
        {"text": "x" * 999},
        {"html": "ü" * 500},
        {"text": ""},
    ]
    assert smtp_bytes(**PLAIN) is not None
    for change in declined:
        assert smtp_bytes(**{**PLAIN, **change}) is None, change


@pytest.mark.parametrize("localtime", [False, True])
def test_it_dates_the_message_as_django_does(settings: Settings, localtime: bool) -> None:
    settings.EMAIL_USE_LOCALTIME = localtime
    fast = smtp_bytes(**PLAIN)

    assert fast is not None
    # The zone: -0000 in UTC, the local offset (+0000 with TIME_ZONE UTC) in local time.
    [ours] = re.findall(rb"^Date: .* ([+-]\d{4})\r$", fast[1], re.MULTILINE)
    [djangos] = re.findall(rb"^Date: .* ([+-]\d{4})\r$", _django(**PLAIN)[2], re.MULTILINE)
    assert ours == djangos


def test_it_leaves_another_default_charset_to_django(settings: Settings) -> None:
    settings.DEFAULT_CHARSET = "iso-8859-1"

    assert smtp_bytes(**PLAIN) is None
