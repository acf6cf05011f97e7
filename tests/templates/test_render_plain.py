"""The plain-template render (texts and `{{ a.b }}` only) against Django's full render.

`_render_plain` must print exactly what the full render prints, or step aside (None) so the
full render decides; these tests compare the two on generated templates and data."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.utils import translation
from hypothesis import given, settings
from hypothesis import strategies as st

from templates import rendering
from templates.rendering import RenderError, render_parts
from templates.sandbox import MAX_OUTPUT_CHARS

NAMES = ("a", "b", "n", "0")
EN = rendering._Locale("en")
TEXT = st.text(alphabet="ab xyz<>&\"'\n\t.:é€{}%", max_size=12).filter(
    lambda s: "{{" not in s and "{%" not in s and "{#" not in s and not s.endswith("{")
)
LOOKUPS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).filter(
    lambda bits: bits[0] != "0"  # a variable cannot start with a digit (a number literal)
)
SCALARS = (
    st.text(alphabet="ab <>&\"'é\n", max_size=8)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=8,
)


@st.composite
def plain_templates(draw: Any) -> str:
    variables = LOOKUPS.map(lambda bits: "{{ " + ".".join(bits) + " }}")
    pieces = draw(st.lists(st.one_of(TEXT, variables)))
    return "".join(pieces)


def _full(
    source: str, data: dict[str, Any], *, autoescape: bool, locale: rendering._Locale
) -> str | RenderError:
    try:
        return rendering._render_nodes("body", source, data, autoescape=autoescape, locale=locale)
    except RenderError as exc:
        return exc


@settings(max_examples=400, deadline=None)
@given(
    source=plain_templates(),
    context=st.dictionaries(st.sampled_from(NAMES[:3]), DATA, max_size=3),
    autoescape=st.booleans(),
    locale=st.sampled_from(["en", "de", "fr"]),
)
def test_a_plain_render_prints_what_the_full_render_prints(source, context, autoescape, locale):
    data = rendering._plain_context(context)
    plan = rendering._plan(source)
    assert plan is not None, "texts and plain variables must get a plan"
    with rendering._Locale(locale) as language:
        plain = rendering._render_plain(plan, data, autoescape=autoescape, locale=language)
    with rendering._Locale(locale) as language:
        full = _full(source, data, autoescape=autoescape, locale=language)
    if plain is not None:
        assert not isinstance(full, RenderError), f"the full render refused: {full}"
        assert plain == full


def test_the_common_template_renders_plainly():
    data = rendering._plain_context({"student": "Ada & <Bo>", "n": 3, "due": {"day": "Monday"}})
    source = "Hello {{ student }}, reminder {{ n }} for {{ due.day }}."
    plan = rendering._plan(source)
    assert plan == ("Hello ", ("student",), ", reminder ", ("n",), " for ", ("due", "day"), ".")
    assert rendering._render_plain(plan, data, autoescape=False, locale=EN) == (
        "Hello Ada & <Bo>, reminder 3 for Monday."
    )
    assert rendering._render_plain(plan, data, autoescape=True, locale=EN) == (
        "Hello Ada &amp; &lt;Bo&gt;, reminder 3 for Monday."
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ name|upper }}",
        "{% if name %}x{% endif %}",
        "{{ 'literal' }}",
        "{{ 3 }}",
        '{{ _("hello") }}',
        "{% comment %}x{% endcomment %}{{ name }}",
        "{% firstof name 'x' %}",
    ],
)
def test_tags_filters_and_literals_take_the_full_render(source):
    assert rendering._plan(source) is None


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({}, "a missing key"),
        ({"name": {"first": "Ada"}}, "a mapping printed"),
        ({"name": ["Ada"]}, "a list printed"),
        ({"name": "x" * (MAX_OUTPUT_CHARS + 1)}, "an output over the limit"),
    ],
)
def test_what_the_plain_render_does_not_cover_is_left_to_the_full_render(context, why):
    plan = rendering._plan("Hi {{ name }}")
    assert (
        rendering._render_plain(
            plan, rendering._plain_context(context), autoescape=False, locale=EN
        )
        is None
    )


def test_errors_are_the_full_renders():
    with pytest.raises(RenderError, match="missing variable 'name'"):
        render_parts(channel="sms", subject="", body="Hi {{ name }}", html="", context={})
    with pytest.raises(RenderError, match="longer than"):
        render_parts(
            channel="sms",
            subject="",
            body="{{ name }}",
            html="",
            context={"name": "x" * (MAX_OUTPUT_CHARS + 1)},
        )


def test_a_number_is_printed_for_the_templates_locale():
    rendered = render_parts(
        channel="email",
        subject="Score {{ score }}",
        body="Score {{ score }}",
        html="<p>{{ score }}</p>",
        context={"score": 1.5},
        locale="de",
    )
    assert (rendered.subject, rendered.text, rendered.html) == (
        "Score 1,5",
        "Score 1,5",
        "<p>1,5</p>",
    )


@pytest.mark.parametrize(
    ("context", "body"),
    [
        ({"name": "Ada"}, "Hi {{ name }}"),
        ({"score": 1.5}, "Score {{ score }}"),
        ({"name": "Ada"}, "{% if name %}Hi {{ name }}{% endif %}"),
        ({}, "Hi {{ name }}"),
    ],
    ids=["text", "number", "full render", "error"],
)
def test_the_callers_language_is_back_after_a_render(context, body):
    with translation.override("fr"):
        with contextlib.suppress(RenderError):
            render_parts(
                channel="sms", subject="", body=body, html="", context=context, locale="de"
            )
        assert translation.get_language() == "fr"
