"""Caps on source size, loop iterations, output size and filter arguments."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from templates import sandbox
from templates.rendering import (
    MAX_SMS_CHARS,
    MAX_SOURCE_CHARS,
    RenderError,
    render_parts,
    validate_source,
)


def _sms(body: str, context: dict) -> str:
    return render_parts(channel="sms", subject="", body=body, html="", context=context).text


def _email_body(body: str, context: dict) -> str:
    return render_parts(channel="email", subject="s", body=body, html="", context=context).text


def test_it_stops_a_nested_loop_bomb_before_it_runs(monkeypatch):
    charged = []
    original = sandbox.RenderBudget.charge_iterations

    def spy(self, count):
        charged.append(count)
        original(self, count)

    monkeypatch.setattr(sandbox.RenderBudget, "charge_iterations", spy)
    bomb = "{% for a in x %}" * 4 + "." + "{% endfor %}" * 4
    with pytest.raises(RenderError, match="loops ran more than 10000 iterations"):
        _email_body(bomb, {"x": list(range(100))})
    # Stopped within the budget: 1 outer + 100 second-level + at most 100 third-level loops.
    assert sum(charged) <= sandbox.MAX_LOOP_ITERATIONS + 100


def test_it_allows_loops_within_the_budget():
    # 99 outer + 99 x 99 inner = 9,900 iterations, under the 10,000 cap.
    source = "{% for a in x %}{% for b in x %}.{% endfor %}{% endfor %}"
    assert _email_body(source, {"x": list(range(99))}) == "." * 99 * 99


def test_it_stops_output_growth_inside_a_loop():
    with pytest.raises(RenderError, match="output is longer than"):
        _email_body(
            "{% for a in x %}{{ big }}{% endfor %}", {"x": list(range(1000)), "big": "y" * 1000}
        )


def test_it_stops_repeated_printing_of_a_large_value():
    with pytest.raises(RenderError, match="output is longer than"):
        _email_body("{{ big }}" * 300, {"big": "y" * 1000})


def test_it_stops_a_doubling_chain_of_add():
    source = (
        "{% with a=s|add:s %}{% with b=a|add:a %}{% with c=b|add:b %}{% with d=c|add:c %}"
        "{{ d|length }}"
        "{% endwith %}{% endwith %}{% endwith %}{% endwith %}"
    )
    with pytest.raises(RenderError, match="the add filter produced more than"):
        _email_body(source, {"s": "y" * 20_000})


def test_it_refuses_a_huge_join_before_building_it():
    with pytest.raises(RenderError, match="join filter would produce more than"):
        _email_body("{{ items|join:sep }}", {"items": ["a"] * 5000, "sep": "-" * 100})


def test_it_bounds_floatformat_precision():
    assert _sms("{{ n|floatformat:2 }}", {"n": 3.14159}) == "3.14"
    with pytest.raises(RenderError, match="floatformat"):
        _sms("{{ n|floatformat:'100000000' }}", {"n": 1.5})


def test_it_stops_a_render_past_its_time(monkeypatch):
    # A deadline already past: the first charge (the text node) must stop the render. A tag,
    # so the full render runs: a plain template (texts and variables, no loop) is printed
    # in one pass bounded by its source and data, and is not timed.
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", -1.0)
    with pytest.raises(RenderError, match="took too long"):
        _sms("Hello {% if name %}{{ name }}{% endif %}", {"name": "Ada"})


def test_it_refuses_oversized_sources_at_save_and_render():
    source = "x" * (MAX_SOURCE_CHARS + 1)
    with pytest.raises(ValidationError) as caught:
        validate_source(channel="sms", subject="", body=source, html="")
    assert "Longer than" in caught.value.message_dict["body"][0]
    with pytest.raises(RenderError, match="Longer than"):
        _sms(source, {})


def test_it_refuses_an_sms_over_the_gateway_limit():
    with pytest.raises(RenderError, match=f"longer than {MAX_SMS_CHARS}"):
        _sms("{{ text }}", {"text": "y" * (MAX_SMS_CHARS + 1)})


def test_it_refuses_data_nested_too_deep():
    deep: dict = {}
    node = deep
    for _ in range(50):
        node["n"] = {}
        node = node["n"]
    with pytest.raises(RenderError, match="nested deeper"):
        _sms("x", {"d": deep})
