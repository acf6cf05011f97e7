"""What a render produces: escaping per part, one-line subjects, dates, stable hashes."""

from __future__ import annotations

import pytest

from comcenter.lib.hashing import json_hash
from templates.rendering import RenderError, render_parts, render_version


def _email(context: dict, *, subject: str = "s", body: str = "b", html: str = "") -> object:
    return render_parts(channel="email", subject=subject, body=body, html=html, context=context)


def test_it_renders_every_part_of_an_email(make_template, data):
    template = make_template()
    rendered = render_version(template.current_version, data)
    assert rendered.subject == "STEM Futures closes on 2026-12-01"
    assert rendered.text == "Hello Ada, STEM Futures closes on 2026-12-01."
    assert rendered.html == "<p>Hello Ada, <b>STEM Futures</b> closes on 2026-12-01.</p>"
    assert rendered.content_hash == json_hash(
        {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    )


def test_it_escapes_data_in_html_only():
    rendered = _email(
        {"name": '<script>alert("x")</script> & co'},
        subject="Hi {{ name }}",
        body="Hi {{ name }}",
        html="<p>Hi {{ name }}</p>",
    )
    assert rendered.subject == 'Hi <script>alert("x")</script> & co'
    assert rendered.text == 'Hi <script>alert("x")</script> & co'
    assert rendered.html == "<p>Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co</p>"


def test_it_escapes_joined_lists_in_html():
    rendered = _email({"tags": ["<b>", "a&b"]}, html="{{ tags|join:', ' }}")
    assert rendered.html == "&lt;b&gt;, a&amp;b"


def test_it_folds_the_subject_to_one_line():
    rendered = _email({"name": "Ada\r\nBcc: everyone@example.org"}, subject="Hi {{ name }}\n")
    assert rendered.subject == "Hi Ada Bcc: everyone@example.org"
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject


def test_it_renders_an_sms_body_only(make_template, data):
    template = make_template(
        key="deadline_soon_sms", channel="sms", subject="", html="", body="Hi {{ name }}\n"
    )
    rendered = render_version(template.current_version, data)
    assert (rendered.subject, rendered.text, rendered.html) == ("", "Hi Ada", "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject": "{{ blank }}", "body": "b"}, "subject is empty"),
        ({"subject": "s", "body": "{{ blank }}"}, "body is empty"),
    ],
)
def test_it_refuses_empty_parts(kwargs, message):
    with pytest.raises(RenderError, match=message):
        render_parts(channel="email", html="", context={"blank": "  "}, **kwargs)


def test_it_formats_iso_dates_from_event_data():
    rendered = _email(
        {"deadline": "2026-12-01T17:30:00Z"},
        body="{{ deadline|date:'j M Y' }} {{ deadline|time:'H:i' }}",
    )
    assert rendered.text == "1 Dec 2026 17:30"


def test_it_refuses_a_date_filter_on_text_that_is_not_a_date():
    with pytest.raises(RenderError, match="date filter needs an ISO 8601 date"):
        _email({"deadline": "next week"}, body="{{ deadline|date:'Y' }}")


def test_it_formats_for_the_templates_locale():
    rendered = render_parts(
        channel="sms",
        subject="",
        body="{{ deadline|date:'F' }} {{ amount|floatformat:2 }}",
        html="",
        context={"deadline": "2026-12-01", "amount": 1234.5},
        locale="de",
    )
    assert rendered.text == "Dezember 1234,50"


def test_it_gives_the_same_hash_for_the_same_version_and_data(make_template, data):
    version = make_template().current_version
    first = render_version(version, data)
    again = render_version(version, dict(data))
    other = render_version(version, {**data, "name": "Grace"})
    assert first == again
    assert other.content_hash != first.content_hash


def test_it_renders_loops_cycles_and_filters():
    rendered = _email(
        {"items": [{"n": "a", "q": 1}, {"n": "b", "q": 2}], "title": "deadline soon"},
        body=(
            "{{ title|title }}:{% for i in items %} {{ forloop.counter }}.{{ i.n|upper }}"
            "x{{ i.q }}{% cycle '!' '?' %}{% endfor %}"
            " ({{ items|length }} item{{ items|length|pluralize }})"
        ),
    )
    assert rendered.text == "Deadline Soon: 1.Ax1! 2.Bx2? (2 items)"


def test_it_does_not_leak_data_into_error_messages():
    with pytest.raises(RenderError) as caught:
        _email(
            {"secret": "hunter2-token", "items": "abc"},
            body="{% for a, b in items %}{{ secret }}{% endfor %}",
        )
    assert "hunter2" not in str(caught.value)
    assert "abc" not in str(caught.value)
