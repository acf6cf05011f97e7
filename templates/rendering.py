"""Rendering stored templates in a sandbox, and validating their source.

The sandbox is a dedicated `Engine`, separate from the project's (which can load files and
every tag library), knowing only the allow-list of sandbox.py. Every render checks again
what the admin checked at save time, because a version row may have been written by other
means (a migration, a shell, an older release with a wider allow-list).

What counts as missing: the context is the event's data, and a template that prints a key
the data lacks must fail, not send a blank. So printing an absent variable (`{{ x }}`,
`{{ a.b }}`, `{{ x|default:"-" }}`, a filter argument, `{% with y=x %}`) raises
`RenderError("missing variable 'x'")`. Only the tests of optional data treat absence as
false: `{% if x %}` and `{% firstof x "fallback" %}` skip an absent `x`, and
`{% for i in x %}` over an absent `x` renders its `{% empty %}` branch — that is how a
template says "this part is optional". `default` applies to values that are present but
empty (use `{% if %}` or `{% firstof %}` for keys that may be absent).

Speed: most message templates are text with plain `{{ name }}` / `{{ a.b }}` variables. For
those, `_plan` keeps the template as a list of its texts and lookups, and `_render_plain`
fills it in without Django's node tree; it prints a value exactly as Django's VariableNode
does (its `render_value_in_context`), and hands anything it does not cover to the full render
(a missing key, a value that is not a scalar, an output over the limit), so every error and
every limit is the full render's. The render budget's clock is the full render's alone: a
plain template has no loop, and its one pass is bounded by its source and its data. Nor does
a plain render of texts switch to the template's language (`_Locale`): nothing it prints
depends on it. tests/templates/test_render_plain.py compares the two renders.

Escaping: the HTML body is autoescaped; the subject, the text body and SMS are not (they
are not HTML, and escaping would show `&amp;` to the reader). The subject is folded to one
line, so data cannot add header lines. Renders are deterministic for a version and a
context, so `Rendered.content_hash` identifies what a message said.
"""

from __future__ import annotations

import functools
import re
import types
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.template import Context, Engine, Node, TemplateSyntaxError, VariableDoesNotExist
from django.template.base import (
    FilterExpression,
    Lexer,
    NodeList,
    Parser,
    Template,
    TextNode,
    Token,
    TokenType,
    VariableNode,
    render_value_in_context,
)
from django.template.defaulttags import (
    CommentNode,
    CycleNode,
    FilterNode,
    FirstOfNode,
    ForNode,
    IfNode,
    SpacelessNode,
    WithNode,
)
from django.utils import translation
from django.utils.html import conditional_escape

from comcenter.lib.hashing import json_hash
from templates import sandbox
from templates.models import Channel, TemplateVersion

MAX_SOURCE_CHARS = 20_000
MAX_SUBJECT_CHARS = 500
# Twilio's Messages API refuses a Body over 1,600 characters (10 concatenated segments);
# failing at render time names the cause instead of a provider 400.
MAX_SMS_CHARS = 1_600
# An auto-reply is a short customer-facing comment; a longer one is a template mistake.
MAX_REPLY_CHARS = 5_000
MAX_CONTEXT_DEPTH = 20

# Nodes the allowed tags produce. Leaves produce output and are metered; containers only
# arrange or transform their children's output.
_LEAF_NODES = (TextNode, VariableNode, CycleNode, FirstOfNode, CommentNode)
_CONTAINER_NODES = (IfNode, ForNode, WithNode, SpacelessNode, FilterNode)
_INVALID_FILTER = re.compile(r"^Invalid filter: '([^']*)'$")


class RenderError(Exception):
    """A template cannot be rendered with this data. Permanent: rendering again gives the
    same result, so the message fails without retries. The text names variables, limits and
    tags, never the data."""

    def __init__(self, message: str, *, part: str = "") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    content_hash: str


class _SandboxParser(Parser):
    """Wraps leaf nodes in the output meter, and refuses any node the allow-list should not
    have produced (a second line behind the tag library)."""

    def extend_nodelist(self, nodelist: NodeList, node: Node, token: Token) -> None:
        if type(node) in _LEAF_NODES:
            node = sandbox.MeteredNode(node)
        elif type(node) not in _CONTAINER_NODES:
            raise self.error(token, f"{{% {token.contents.split()[0]} %}} is not allowed")
        super().extend_nodelist(nodelist, node, token)


class _SandboxTemplate(Template):
    def compile_nodelist(self) -> NodeList:
        parser = _SandboxParser(
            Lexer(self.source).tokenize(),
            self.engine.template_libraries,
            self.engine.template_builtins,
            self.origin,
        )
        nodelist = parser.parse()
        self.extra_data = parser.extra_data
        return nodelist


class _SandboxEngine(Engine):
    # Engine always prepends these to `builtins`; the sandbox must start from nothing.
    default_builtins: ClassVar[list[str]] = []


ENGINE = _SandboxEngine(
    dirs=[],
    app_dirs=False,
    loaders=[],
    libraries={},
    builtins=["templates.sandbox"],
    context_processors=[],
    # Django only formats and tests this value; the stubs' `str` is narrower than that.
    string_if_invalid=sandbox.MissingSentinel(),  # type: ignore[arg-type]
    debug=False,
    autoescape=True,
)


class _MeteredContext(Context):
    def __init__(self, data: dict[str, Any], *, autoescape: bool) -> None:
        super().__init__(data, autoescape=autoescape)
        self.budget = sandbox.RenderBudget()


def _forbidden_tags(source: str) -> list[str]:
    """Block tags outside the allow-list, named with their line, before the parser's
    generic "Invalid block tag" (which reports only the first and suggests {% load %})."""
    found = []
    for token in Lexer(source).tokenize():
        if token.token_type != TokenType.BLOCK:
            continue
        words = token.contents.split()
        if words and words[0] not in sandbox.TAG_WORDS:
            found.append(f"{{% {words[0]} %}} is not allowed (line {token.lineno})")
    return found


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> Template:
    # Versions are immutable, so the same source recurs for every message of a template;
    # compiled templates keep no render state and are safe to share between threads.
    return _SandboxTemplate(source, engine=ENGINE)


def _source_errors(source: str) -> tuple[str, ...]:
    """What is wrong with one part's source, as messages for an operator."""
    if len(source) > MAX_SOURCE_CHARS:
        # Checked before the caches, so they never hold an oversized text.
        return (f"Longer than {MAX_SOURCE_CHARS} characters ({len(source)}).",)
    return _syntax_errors(source)


@functools.lru_cache(maxsize=512)
def _syntax_errors(source: str) -> tuple[str, ...]:
    # Cached like `_compile`: every render checks its source again.
    forbidden = _forbidden_tags(source)
    if forbidden:
        return tuple(forbidden)
    try:
        _compile(source)
    except TemplateSyntaxError as exc:
        message = str(exc)
        match = _INVALID_FILTER.match(message)
        return (f"The filter '{match.group(1)}' is not allowed." if match else message,)
    except Exception as exc:
        # A tag that evaluates something while compiling; never let it pass as valid.
        return (f"The template could not be compiled ({type(exc).__name__}).",)
    return ()


def validate_source(*, channel: str, subject: str, body: str, html: str) -> None:
    """Raise ValidationError with messages per field (channel, subject, body, html)."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if channel not in Channel.values:
        add("channel", f"Unknown channel {channel!r}.")
    if not body.strip():
        add("body", "The body is required.")
    if channel == Channel.EMAIL and not subject.strip():
        add("subject", "An email template needs a subject.")
    if channel in (Channel.SMS, Channel.HELPDESK):
        name = "An SMS" if channel == Channel.SMS else "A helpdesk"
        if subject:
            add("subject", f"{name} template has no subject.")
        if html:
            add("html", f"{name} template has no HTML body.")
    for field, source in (("subject", subject), ("body", body), ("html", html)):
        for message in _source_errors(source):
            add(field, message)
    if errors:
        raise ValidationError(errors)


class _NotPlain(Exception):
    """Raised by `_frozen` at the first value `_freeze` would refuse."""


_PLAIN_SCALARS = (str, bool, int, float)


def _frozen(value: Any, depth: int) -> Any:
    """`_freeze` without building the path of every value (the common case: all plain)."""
    if value is None or isinstance(value, _PLAIN_SCALARS):
        return value
    if depth >= MAX_CONTEXT_DEPTH:
        raise _NotPlain
    if isinstance(value, dict):
        frozen = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain
            frozen[key] = _frozen(item, depth + 1)
        return types.MappingProxyType(frozen)
    if isinstance(value, list):
        return tuple([_frozen(item, depth + 1) for item in value])
    raise _NotPlain


def _freeze(value: Any, path: str, depth: int) -> Any:
    """A read-only copy of plain JSON-like data; anything else is refused.

    Model instances, requests, settings, callables: none may reach a template, whatever a
    caller passes. Mappings become read-only proxies and lists tuples, so a template cannot
    call a mutating method on the data (Django calls argument-less methods it looks up).
    Renders copy with `_frozen`, which skips the path; this runs only to name what it
    refused."""
    if value is None or isinstance(value, _PLAIN_SCALARS):
        return value
    if depth >= MAX_CONTEXT_DEPTH:
        raise RenderError(f"the context is nested deeper than {MAX_CONTEXT_DEPTH} levels")
    if isinstance(value, dict):
        frozen = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RenderError(f"the context has a non-text key under '{path or '.'}'")
            frozen[key] = _freeze(item, f"{path}.{key}" if path else key, depth + 1)
        return types.MappingProxyType(frozen)
    if isinstance(value, list):
        return tuple(_freeze(item, f"{path}.{n}", depth + 1) for n, item in enumerate(value))
    raise RenderError(
        f"the context value '{path}' is a {type(value).__name__}, not plain data "
        "(text, number, true/false, null, list or object)"
    )


def _plain_context(context: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(context, dict):
        raise RenderError("the context must be an object")
    try:
        frozen = _frozen(context, 0)
    except _NotPlain:
        frozen = _freeze(context, "", 0)  # raises the RenderError that names the value
    # The top level stays a dict: Django writes loop and `cycle ... as` variables into it.
    return dict(frozen)


# A plain template: its texts (str) and variables (tuples of lookups), in order.
_Plan = tuple[str | tuple[str, ...], ...]
_MAPPINGS = (dict, types.MappingProxyType)
_SCALARS = (int, float, bool, type(None))
# What render_value_in_context reads of a context (use_tz, use_l10n: None, as on every
# context `_render_part` makes), one per autoescape setting; it never writes to them.
_PRINT_CONTEXTS = {escape: Context(autoescape=escape) for escape in (False, True)}


def _plain_variable(expression: FilterExpression) -> tuple[str, ...] | None:
    """The lookups of `{{ a.b }}` without filters, translation or a literal; else None."""
    if expression.filters or not expression.is_var:
        return None
    variable = expression.var
    if variable.lookups is None or variable.translate:
        return None
    return tuple(variable.lookups)


@functools.lru_cache(maxsize=512)
def _plan(source: str) -> _Plan | None:
    """The template as texts and plain variables, or None if it uses anything else
    (a tag, a filter, a literal): those render through Django's nodes."""
    plan: list[str | tuple[str, ...]] = []
    for node in _compile(source).nodelist:
        inner = node.inner if isinstance(node, sandbox.MeteredNode) else node
        if type(inner) is TextNode:
            plan.append(inner.s)
            continue
        lookups = _plain_variable(inner.filter_expression) if type(inner) is VariableNode else None
        if lookups is None:
            return None
        plan.append(lookups)
    return tuple(plan)


class _Locale:
    """`translation.override(name)`, entered when a render first needs the language and
    left with the render. A plain render of texts prints nothing that depends on it, and
    switching the language there and back is a third of such a render's cost."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._override: translation.override | None = None

    def need(self) -> None:
        if self._override is None:
            self._override = translation.override(self.name)
            self._override.__enter__()

    def __enter__(self) -> _Locale:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._override is not None:
            self._override.__exit__(*exc_info)
            self._override = None


def _render_plain(
    plan: _Plan, data: dict[str, Any], *, autoescape: bool, locale: _Locale
) -> str | None:
    """`plan` filled in with `data`, as the full render would print it; None where this
    does not cover the case and the full render must decide (it raises, or prints a value
    that is not a scalar)."""
    printer = _PRINT_CONTEXTS[autoescape]
    out: list[str] = []
    for piece in plan:
        if type(piece) is str:
            out.append(piece)
            continue
        value: Any = data
        for bit in piece:
            # A mapping lookup is the first Django tries; a key it lacks falls through to
            # attribute and index lookups, which the full render does.
            if type(value) not in _MAPPINGS or bit not in value:
                return None
            value = value[bit]
        if type(value) is str:
            out.append(conditional_escape(value) if autoescape else value)
        elif type(value) in _SCALARS:
            locale.need()  # numbers are printed for the template's language
            out.append(render_value_in_context(value, printer))
        else:
            return None
    text = "".join(out)
    return text if len(text) <= sandbox.MAX_OUTPUT_CHARS else None


def _render_part(
    part: str, source: str, data: dict[str, Any], *, autoescape: bool, locale: _Locale
) -> str:
    errors = _source_errors(source)
    if errors:
        raise RenderError(f"the {part} template is invalid: {errors[0]}", part=part)
    plan = _plan(source)
    if plan is not None:
        text = _render_plain(plan, data, autoescape=autoescape, locale=locale)
        if text is not None:
            return text
    return _render_nodes(part, source, data, autoescape=autoescape, locale=locale)


def _render_nodes(
    part: str, source: str, data: dict[str, Any], *, autoescape: bool, locale: _Locale
) -> str:
    """The full render: Django's nodes, metered by the sandbox, errors as RenderError."""
    locale.need()
    template = _compile(source)
    try:
        return template.render(_MeteredContext(dict(data), autoescape=autoescape))
    except sandbox.MissingVariable as exc:
        message = (
            f"missing variable '{exc.name}'"
            if exc.name
            else "a value could not be printed (missing, or a method that needs arguments)"
        )
        raise RenderError(message, part=part) from None
    except VariableDoesNotExist as exc:
        # Raised for filter arguments. Its text quotes the data searched: keep the name only.
        name = exc.params[0] if exc.params else ""
        raise RenderError(f"missing variable '{name}'", part=part) from None
    except (sandbox.LimitExceeded, sandbox.TemplateDataError) as exc:
        raise RenderError(str(exc), part=part) from None
    except Exception as exc:
        # Anything else comes from a filter or tag fed unsuitable data (a number to `join`,
        # an unpacking loop over a text). Exception texts may quote the data, so only the
        # type is kept; the message fails permanently instead of crashing the worker.
        raise RenderError(f"{type(exc).__name__} while rendering the {part}", part=part) from None


def _check_length(part: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise RenderError(f"the rendered {part} is longer than {limit} characters", part=part)


def render_parts(
    *,
    channel: str,
    subject: str,
    body: str,
    html: str,
    context: dict[str, Any],
    locale: str = "en",
) -> Rendered:
    """Render template sources (a version's, or a draft for a preview) with plain data.

    Dates and numbers are formatted for `locale` (the template's language)."""
    data = _plain_context(context)
    with _Locale(locale or "en") as language:
        if channel == Channel.SMS:
            text = _render_part("body", body, data, autoescape=False, locale=language).strip()
            if not text:
                raise RenderError("the rendered SMS is empty", part="body")
            _check_length("SMS", text, MAX_SMS_CHARS)
            rendered_subject = rendered_html = ""
        elif channel == Channel.HELPDESK:
            text = _render_part("body", body, data, autoescape=False, locale=language).strip()
            if not text:
                raise RenderError("the rendered reply is empty", part="body")
            _check_length("reply", text, MAX_REPLY_CHARS)
            rendered_subject = rendered_html = ""
        elif channel == Channel.EMAIL:
            raw_subject = _render_part("subject", subject, data, autoescape=False, locale=language)
            # One line: a newline in the data must not become a header line.
            rendered_subject = " ".join(raw_subject.split())
            if not rendered_subject:
                raise RenderError("the rendered subject is empty", part="subject")
            _check_length("subject", rendered_subject, MAX_SUBJECT_CHARS)
            text = _render_part("body", body, data, autoescape=False, locale=language).strip()
            if not text:
                raise RenderError("the rendered body is empty", part="body")
            rendered_html = (
                _render_part("html", html, data, autoescape=True, locale=language).strip()
                if html.strip()
                else ""
            )
        else:
            raise RenderError(f"unknown channel {channel!r}")
    return Rendered(
        subject=rendered_subject,
        text=text,
        html=rendered_html,
        content_hash=json_hash({"subject": rendered_subject, "text": text, "html": rendered_html}),
    )


def render_version(version: TemplateVersion, context: dict[str, Any]) -> Rendered:
    """Render one immutable version with the event's data. Raises RenderError (permanent)."""
    template = version.template
    return render_parts(
        channel=template.channel,
        subject=version.subject,
        body=version.body,
        html=version.html,
        context=context,
        locale=template.locale,
    )
