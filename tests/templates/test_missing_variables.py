"""A missing variable fails the render with its name; only if/for/firstof test for absence."""

from __future__ import annotations

import pytest

from templates.rendering import RenderError, render_parts, render_version


def _sms(body: str, context: dict) -> str:
    return render_parts(channel="sms", subject="", body=body, html="", context=context).text


@pytest.mark.parametrize(
    ("source", "context", "name"),
    [
        ("Closes {{ deadline }}", {}, "deadline"),
        ("{{ a.b }}", {"a": {}}, "a.b"),
        ("{{ a.b }}", {"a": "text"}, "a.b"),
        ("{{ a.b.c }}", {"a": {"b": {}}}, "a.b.c"),
        ("{{ items.5 }}", {"items": [1]}, "items.5"),
        ('{{ deadline|default:"soon" }}', {}, "deadline"),
        ("{{ deadline|upper }}", {}, "deadline"),
        ("{{ name|default:fallback }}", {"name": ""}, "fallback"),
        ("{% with d=deadline %}{{ d }}{% endwith %}", {}, "deadline"),
        ("{% for x in items %}{{ x.name }}{% endfor %}", {"items": [{"id": 1}]}, "x.name"),
        ("{% if ok %}{{ deadline }}{% endif %}", {"ok": True}, "deadline"),
    ],
)
def test_it_fails_with_the_name_of_the_missing_variable(source, context, name):
    with pytest.raises(RenderError) as caught:
        _sms(source, context)
    assert str(caught.value) == f"missing variable '{name}'"


def test_it_fails_the_email_part_that_misses_a_variable(make_template, data):
    template = make_template(html="<p>{{ unknown_field }}</p>")
    with pytest.raises(RenderError) as caught:
        render_version(template.current_version, data)
    assert str(caught.value) == "missing variable 'unknown_field'"
    assert caught.value.part == "html"


def test_it_treats_an_absent_if_condition_as_false():
    assert _sms("{% if coupon %}Code {{ coupon }}{% else %}No code{% endif %}", {}) == "No code"
    assert _sms("{% if coupon %}Code {{ coupon }}{% endif %}.", {"coupon": "X1"}) == "Code X1."
    assert _sms("{% if a.b %}yes{% else %}no{% endif %}", {}) == "no"
    assert _sms("{% if not coupon %}none{% endif %}", {}) == "none"


def test_it_treats_an_absent_loop_sequence_as_empty():
    assert _sms("{% for x in items %}{{ x }}{% empty %}nothing{% endfor %}", {}) == "nothing"
    assert _sms("{% for x in items %}{{ x }},{% endfor %}", {"items": ["a", "b"]}) == "a,b,"


def test_it_lets_firstof_fall_back_over_absent_values():
    assert _sms('{% firstof nickname name "there" %}', {"name": "Ada"}) == "Ada"
    assert _sms('{% firstof nickname name "there" %}', {}) == "there"


def test_it_applies_default_to_present_but_empty_values():
    assert _sms('{{ name|default:"there" }}', {"name": ""}) == "there"
    assert _sms('{{ name|default_if_none:"there" }}', {"name": None}) == "there"


def test_it_fails_on_a_method_that_needs_arguments():
    with pytest.raises(RenderError, match="could not be printed"):
        _sms("{{ name.zfill }}", {"name": "7"})
