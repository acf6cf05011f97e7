"""Input validation for the intake, and the shapes the OpenAPI schema publishes."""

from __future__ import annotations

import contextlib
import functools
import math
import re
from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField, _UnvalidatedField, empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from comcenter.lib.wire import E164, IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_RULE, quoted

LOCALE = re.compile(r"\A[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*\Z")
MAX_DEPTH = 20
MAX_SEQUENCE = 2**53


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know: a typo such as "sequnce" must not pass silently."""

    # Fields of which at least one must be given: a subclass's `validate` checks it, the
    # OpenAPI schema publishes it (events/schema.py). The docstring is published as well.
    any_required: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            # DRF's CharField turns 7 into "7"; the schema says string, and a key sent as a
            # number must not quietly equal the same key sent as text. A null is the field's
            # own to answer ("may not be null", or allowed where the field allows it).
            not_text = sorted(
                name
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and name in data
                and data[name] is not None
                and not isinstance(data[name], str)
            )
            if not_text:
                raise serializers.ValidationError({name: ["Not a string."] for name in not_text})
        return super().to_internal_value(data)


class RecipientSerializer(StrictSerializer):
    any_required = ("email", "phone")

    id = serializers.CharField(max_length=255)
    email = serializers.EmailField(max_length=254, required=False)
    phone = serializers.RegexField(
        E164,
        required=False,
        error_messages={"invalid": "Enter an E.164 phone number such as +12025550123."},
    )
    locale = serializers.RegexField(
        LOCALE,
        max_length=35,
        required=False,
        error_messages={"invalid": "Enter a language tag such as en or pt-BR."},
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("email") and not attrs.get("phone"):
            raise serializers.ValidationError(
                {"email": ["A recipient needs an email or a phone (or both)."]}
            )
        return attrs


class EventInSerializer(StrictSerializer):
    event_type = serializers.CharField(max_length=100)
    idempotency_key = serializers.RegexField(
        IDEMPOTENCY_KEY,
        required=False,
        trim_whitespace=False,
        error_messages={"invalid": f"An idempotency key is {IDEMPOTENCY_KEY_RULE}."},
        help_text=f"Or the Idempotency-Key header; one is required. {IDEMPOTENCY_KEY_RULE}.",
    )
    ordering_key = serializers.CharField(
        max_length=255, required=False, help_text="Defaults to recipient.id."
    )
    sequence = serializers.IntegerField(min_value=1, max_value=MAX_SEQUENCE, required=False)
    recipient = RecipientSerializer()
    # A field named like Serializer.data, which the intake never reads (it calls
    # run_validation only): the stubs' complaint does not apply.
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    occurred_at = serializers.DateTimeField(required=False)
    expires_at = serializers.DateTimeField(required=False)


class _Plain(Exception):
    """The value is not one the fast path answers for: the serializer decides."""


def _text_is_plain(field: serializers.CharField, value: Any) -> bool:
    # What CharField.run_validation returns unchanged: a non-empty str, already trimmed
    # where the field trims, that passes the field's own validators.
    return (
        type(value) is str
        and value != ""
        and (not field.trim_whitespace or value.strip() == value)
        and _passes(field, value)
    )


def _passes(field: serializers.Field, value: Any) -> bool:
    try:
        for validator in field.validators:
            # An ASCII text holds no surrogate: DRF's check walks every character in Python
            # (about as long as the field's other validators together), str.isascii is C.
            if type(validator) is ProhibitSurrogateCharactersValidator and value.isascii():
                continue
            if getattr(validator, "requires_context", False):
                return False
            validator(value)  # type: ignore[call-arg]  # a context validator returned above
    except Exception:  # the field's own error message comes from the serializer
        return False
    return True


def _plain_value(field: serializers.Field, value: Any) -> Any:
    """`field.run_validation(value)` for a value it returns as it is, or _Plain."""
    kind = type(field)
    if (
        isinstance(field, serializers.CharField)
        and kind.run_validation is serializers.CharField.run_validation
        and kind.to_internal_value is serializers.CharField.to_internal_value
    ):
        if _text_is_plain(field, value):
            return value
    elif kind is serializers.IntegerField:
        if type(value) is int and _passes(field, value):
            return value
    elif isinstance(field, serializers.DictField) and kind is serializers.DictField:
        free_form = type(field.child) is _UnvalidatedField
        if (
            free_form
            and type(value) is dict
            and (value or field.allow_empty)
            and _passes(field, value)
        ):
            return dict(value)
    elif isinstance(field, StrictSerializer) and type(value) is dict:
        return plain_internal_value(field, value)
    raise _Plain


@functools.lru_cache(maxsize=64)
def _field_table(
    serializer: StrictSerializer,
) -> tuple[frozenset[str], tuple[tuple[str, serializers.Field], ...]] | None:
    """A serializer's field names and (name, field) pairs as plain Python containers, read
    once per serializer (the intake's is one per process): its `fields` is a BindingDict,
    whose key comparison and iteration go through collections.abc, several µs per body.
    None when a field is one the fast path never answers for (read-only, or with another
    source)."""
    fields = tuple(serializer.fields.items())
    if any(field.read_only or field.source_attrs != [name] for name, field in fields):
        return None
    return frozenset(name for name, _ in fields), fields


def plain_internal_value(serializer: StrictSerializer, data: dict[str, Any]) -> dict[str, Any]:
    """What `serializer.run_validation(data)` returns, without DRF's per-field machinery,
    for the common body: known fields only, each a value its field returns unchanged (text,
    integers, a free-form dict, nested strict serializers); raises _Plain for anything else
    (a missing required field, a timestamp to parse, a value to coerce or to refuse), which
    the serializer then validates, so every answer and error message stays its own. The
    rules are the fields' (their validators, limits and defaults): none is restated here."""
    table = _field_table(serializer)
    if table is None or not data.keys() <= table[0] or serializer.validators:
        raise _Plain
    result: dict[str, Any] = {}
    for name, field in table[1]:
        if name in data:
            result[name] = _plain_value(field, data[name])
            continue
        if field.required:
            raise _Plain
        if field.default is empty:
            # No default: the field stays out, as in DRF, whose get_default raises SkipField
            # for it first thing (an exception per absent optional field, several per body).
            continue
        with contextlib.suppress(SkipField):  # a partial serializer's: none either
            result[name] = field.get_default()
    try:
        validated: dict[str, Any] = serializer.validate(result)
    except Exception:
        raise _Plain from None
    return validated


def internal_value(serializer: StrictSerializer, data: Any) -> dict[str, Any]:
    """`serializer.run_validation(data)`, through `plain_internal_value` when it can answer."""
    if type(data) is dict:
        try:
            return plain_internal_value(serializer, data)
        except _Plain:
            pass
    return dict(serializer.run_validation(data))


class EventAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    duplicate = serializers.BooleanField()
    request_id = serializers.CharField()


class MessageOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    channel = serializers.CharField()
    state = serializers.CharField()
    template = serializers.CharField()
    attempts = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class EventOutSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uid")
    status = serializers.CharField()
    event_type = serializers.CharField()
    idempotency_key = serializers.CharField()
    ordering_key = serializers.CharField()
    sequence = serializers.IntegerField(allow_null=True)
    request_id = serializers.CharField()
    received_at = serializers.DateTimeField()
    messages = MessageOutSerializer(many=True)


def text_is_storable(text: str, *, overflowed: bool) -> bool:
    """True when strictly parsed JSON `text` cannot hold a value `find_unstorable` refuses,
    so the walk can be skipped. A strict parse of text decoded from UTF-8 yields NUL or a
    lone surrogate only from a `\\u` escape, a value nested deeper than MAX_DEPTH only
    inside more than MAX_DEPTH brackets, and a non-finite number only from a float literal
    that overflows (`overflowed`, from the parser's float hook; NaN and Infinity are refused
    by the parser). Anything else: False, and the walk decides."""
    return not overflowed and "\\u" not in text and text.count("{") + text.count("[") <= MAX_DEPTH


def find_unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The path of the first value a database cannot store faithfully, or None.

    PostgreSQL rejects NUL in JSON text, UTF-8 cannot encode lone surrogates, JSON has no
    NaN or Infinity, and very deep nesting is a denial-of-service vector."""
    if depth > MAX_DEPTH:
        return f"{path or '(root)'}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or '(root)'}: contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path or '(root)'}: contains an unpaired surrogate"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{path or '(root)'}: not a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            # The path is echoed in the error: quoted, or a lone surrogate in a key would
            # make the error itself unencodable.
            where = f"{path}.{quoted(key)}".lstrip(".")
            problem = find_unstorable(key, f"{where} (key)", depth + 1)
            if problem:
                return problem
            problem = find_unstorable(item, where, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = find_unstorable(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
    return None
