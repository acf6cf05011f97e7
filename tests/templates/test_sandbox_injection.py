"""Template injection: forbidden tags and filters are refused when saved AND when rendered,
and nothing but plain data reaches a template."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from templates.models import Template, TemplateVersion
from templates.rendering import RenderError, render_parts, render_version
from templates.services import template_create

FORBIDDEN = [
    "{% debug %}",
    "{% load static %}",
    "{% load log %}{% get_admin_log 10 as log %}",
    '{% include "admin/base.html" %}',
    '{% extends "admin/base.html" %}',
    '{% ssi "/etc/passwd" %}',
    '{% url "admin:index" %}',
    "{% csrf_token %}",
    "{% block body %}x{% endblock %}",
    "{% templatetag openblock %}",
    "{% lorem 100000 w %}",
    "{% now 'Y' %}",
    "{% autoescape off %}{{ name }}{% endautoescape %}",
    "{% if name %}{% debug %}{% endif %}",
    "{% for x in items %}{% include 'x.html' %}{% endfor %}",
]
FORBIDDEN_FILTERS = ["safe", "safeseq", "ljust:'999999999'", "stringformat:'999999999s'", "pprint"]


def _sms_version(body: str) -> TemplateVersion:
    """A version written around the services, as a migration or a shell could."""
    template = Template.objects.create(key="raw", channel="sms", body=body)
    return TemplateVersion.objects.create(template=template, number=1, body=body, content_hash="x")


@pytest.mark.parametrize("source", FORBIDDEN)
def test_it_refuses_forbidden_tags_at_save(db, source):
    with pytest.raises(ValidationError) as caught:
        template_create(key="evil", channel="sms", body=f"Hi {source}", actor="mallory")
    assert "body" in caught.value.message_dict
    assert "not allowed" in " ".join(caught.value.message_dict["body"])
    assert not Template.objects.exists()


@pytest.mark.parametrize("source", FORBIDDEN)
def test_it_refuses_forbidden_tags_at_render(db, source):
    version = _sms_version(f"Hi {source}")
    with pytest.raises(RenderError, match="not allowed"):
        render_version(version, {"name": "Ada", "items": [1]})


@pytest.mark.parametrize("name", FORBIDDEN_FILTERS)
def test_it_refuses_forbidden_filters_at_save_and_render(db, name):
    source = f"{{{{ name|{name} }}}}"
    with pytest.raises(ValidationError, match="is not allowed"):
        template_create(key="evil", channel="email", subject="s", body="b", html=source)
    with pytest.raises(RenderError, match="is not allowed"):
        render_version(_sms_version(source), {"name": "Ada"})


def test_it_refuses_the_safe_filter_inside_a_filter_block(db):
    with pytest.raises(ValidationError):
        template_create(key="evil", channel="sms", body="{% filter safe %}x{% endfilter %}")


def test_it_refuses_a_model_instance_in_the_context(db):
    user = User.objects.create_user("alice", password="pw")
    with pytest.raises(RenderError, match="'user' is a User, not plain data"):
        render_parts(
            channel="sms", subject="", body="{{ user.password }}", html="", context={"user": user}
        )


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, (1, 2), b"bytes", type, print, {"nested": {"deep": [object()]}}],
)
def test_it_refuses_anything_but_plain_data(value):
    with pytest.raises(RenderError, match="not plain data"):
        render_parts(channel="sms", subject="", body="x", html="", context={"v": value})


def test_it_refuses_non_text_keys():
    with pytest.raises(RenderError, match="non-text key"):
        render_parts(channel="sms", subject="", body="x", html="", context={"v": {1: "a"}})


def test_it_names_where_in_the_data_it_found_what_it_refuses():
    context = {"ok": [1, {"a": None}], "v": {"list": ["x", {"deep": {2, 3}}]}}
    with pytest.raises(RenderError, match=r"the context value 'v\.list\.1\.deep' is a set"):
        render_parts(channel="sms", subject="", body="x", html="", context=context)
    with pytest.raises(RenderError, match=r"non-text key under 'v\.inner'"):
        render_parts(
            channel="sms", subject="", body="x", html="", context={"v": {"inner": {3: "a"}}}
        )


def test_it_hands_the_template_a_read_only_copy_of_the_data():
    data = {"items": ["a", "b"], "who": {"name": "Ada"}}
    rendered = render_parts(
        channel="sms",
        subject="",
        # Django calls an argument-less method it looks up: on a copy that has none.
        body=(
            "{% if items.pop or who.clear %}mutable{% endif %}"
            "{{ who.name }}: {% for i in items %}{{ i }}{% endfor %}"
        ),
        html="",
        context=data,
    )

    assert rendered.text == "Ada: ab"
    assert data == {"items": ["a", "b"], "who": {"name": "Ada"}}


@pytest.mark.parametrize(
    "source",
    [
        "{{ settings.SECRET_KEY }}",
        "{{ request.user }}",
        "{{ user.password }}",
        "{{ perms }}",
        "{{ csrf_token }}",
        "{{ messages }}",
    ],
)
def test_it_reaches_no_project_state(source):
    # Nothing is there to read: the sandbox has no context processors or globals.
    with pytest.raises(RenderError, match="missing variable"):
        render_parts(channel="sms", subject="", body=source, html="", context={"name": "Ada"})


def test_it_cannot_mutate_or_call_into_the_data():
    data = {"items": [1, 2, 3], "info": {"a": 1}}
    for source in ("{{ items.pop }}", "{{ info.clear }}", "{{ info.popitem }}"):
        with pytest.raises(RenderError):
            render_parts(channel="sms", subject="", body=source, html="", context=data)
    assert data == {"items": [1, 2, 3], "info": {"a": 1}}


def test_it_refuses_private_attribute_lookups():
    with pytest.raises(RenderError):
        render_parts(
            channel="sms", subject="", body="{{ name.__class__ }}", html="", context={"name": "x"}
        )
