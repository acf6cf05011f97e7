"""What a stored template may use, and the limits on a render.

Templates are written by operators but filled with data sent by machine clients, and are
rendered inside the workers. Django's template language runs no arbitrary code, but its full
tag set can read files (`include`, `ssi`), reach other libraries (`load`), dump the context
(`debug`) and burn memory (`lorem 1000000`, `ljust:"999999999"`). So the sandbox engine
(rendering.py) knows only the `register` library below: an allow-list, not a deny-list, so a
tag or filter added by a future Django release is unavailable until someone adds it here.

Tags allowed: if/elif/else, for/empty, with, comment, spaceless, filter, firstof, cycle.
Left out, besides the dangerous ones: `now`, `lorem` (output not a function of the data),
`autoescape` (see below), `verbatim` (renders at compile time, outside the meter),
`templatetag`, `widthratio`, `regroup`, `ifchanged`, `resetcycle`, `querystring`, `url`,
`csrf_token`, `block`, `extends`, `include`, `load`, `debug`.

Filters allowed: add, capfirst, cut, date, default, default_if_none, escape, first,
floatformat, force_escape, iriencode, join, last, length, linebreaks, linebreaksbr, lower,
pluralize, slice, time, title, truncatechars, truncatewords, upper, urlencode, wordcount,
wordwrap, yesno. Left out: `safe`, `safeseq` and the `autoescape` tag — the HTML body is
escaped, and marking data safe would let a client inject markup into an operator's email
(the operator's own markup is template text and never escaped, so nothing needs `safe`);
`random`, `timesince`, `timeuntil` (a re-render must give the same bytes, so the content
hash of a retried send matches the first attempt); `ljust`, `rjust`, `center`,
`stringformat` (width arguments allocate without bound); `urlize`, `striptags`, `pprint`,
`json_script`, `unordered_list`, `dictsort` and the rest (not needed for messages).

Limits, per rendered part: loop iterations (charged when a loop starts, so nested loops
multiply and a loop bomb stops before it runs), characters produced (charged at every leaf
node — text, variables, firstof, cycle — so memory stays bounded whatever the
containers do), the size of any filter result, and wall time (checked at every charge).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Collection, Sized
from datetime import date, datetime
from typing import Any

from django.template import Library, Node
from django.template.base import FilterExpression, Parser, Token
from django.template.defaultfilters import register as django_filters
from django.template.defaulttags import ForNode
from django.template.defaulttags import register as django_tags
from django.utils import timezone

MAX_LOOP_ITERATIONS = 10_000
MAX_OUTPUT_CHARS = 200_000
MAX_RENDER_SECONDS = 1.0


class LimitExceeded(Exception):
    """A render went over one of the caps above."""


class TemplateDataError(Exception):
    """A filter got data it cannot use; the message names the filter, never the data."""


class MissingVariable(Exception):
    """A printed variable is absent from the context (`name` is its dotted path)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class RenderBudget:
    """The allowance of one render of one part, carried on its context."""

    def __init__(self) -> None:
        self.max_iterations = MAX_LOOP_ITERATIONS
        self.max_output_chars = MAX_OUTPUT_CHARS
        self.iterations_left = MAX_LOOP_ITERATIONS
        self.output_left = MAX_OUTPUT_CHARS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded("the render took too long")

    def charge_iterations(self, count: int) -> None:
        self.iterations_left -= count
        if self.iterations_left < 0:
            raise LimitExceeded(f"loops ran more than {self.max_iterations} iterations in all")
        self._check_time()

    def charge_output(self, chars: int) -> None:
        self.output_left -= chars
        if self.output_left < 0:
            raise LimitExceeded(f"the output is longer than {self.max_output_chars} characters")
        self._check_time()


def budget_of(context: Any) -> RenderBudget:
    """The budget of the render in progress. A context without one was not made by
    rendering.py; refusing it keeps the sandbox engine from being used unmetered."""
    budget = getattr(context, "budget", None)
    if not isinstance(budget, RenderBudget):
        raise LimitExceeded("the sandbox engine renders only with a render budget")
    return budget


class MissingSentinel:
    """The engine's `string_if_invalid`: turns a silent blank into an exception.

    Django prints `string_if_invalid % variable` where a printed variable is missing, when
    that setting is truthy and contains "%s" — so this object says it does, and raises from
    `%` with the variable's name. Where Django substitutes the setting itself (a method that
    needs arguments), the object becomes the value and any attempt to print it raises."""

    def __bool__(self) -> bool:
        return True

    def __contains__(self, item: object) -> bool:
        return True

    def __mod__(self, variable: object) -> str:
        raise MissingVariable(str(variable))

    def __str__(self) -> str:
        raise MissingVariable("")

    def __repr__(self) -> str:
        return "<missing variable>"


class MeteredNode(Node):
    """Wraps a leaf node and charges what it produced to the render budget."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner

    def render(self, context: Any) -> str:
        output = self.inner.render(context)
        budget = getattr(context, "budget", None)
        if type(budget) is not RenderBudget:  # the common case inlined; budget_of() says why
            budget = budget_of(context)
        budget.charge_output(len(output))
        return output

    def __repr__(self) -> str:
        return f"<Metered {self.inner!r}>"


class MeteredSequence:
    """Stands in for a for loop's sequence and charges its length before the loop runs."""

    def __init__(self, inner: FilterExpression) -> None:
        self.inner = inner

    def resolve(self, context: Any, ignore_failures: bool = False) -> Any:
        values = self.inner.resolve(context, ignore_failures=ignore_failures)
        if values is None:
            return None
        if not isinstance(values, Sized):
            values = list(values)
        budget_of(context).charge_iterations(len(values))
        return values

    def __str__(self) -> str:
        return str(self.inner)


register = Library()


def _metered_for(parser: Parser, token: Token) -> ForNode:
    node: ForNode = django_tags.tags["for"](parser, token)
    # The stubs type the loop's sequence as FilterExpression | str; Django only calls its
    # resolve(), which the wrapper provides.
    node.sequence = MeteredSequence(node.sequence)  # type: ignore[assignment,arg-type]
    return node


ALLOWED_TAGS: dict[str, Callable[[Parser, Token], Node]] = {
    "if": django_tags.tags["if"],
    "for": _metered_for,
    "with": django_tags.tags["with"],
    "comment": django_tags.tags["comment"],
    "spaceless": django_tags.tags["spaceless"],
    "filter": django_tags.tags["filter"],
    "firstof": django_tags.tags["firstof"],
    "cycle": django_tags.tags["cycle"],
}
# Words that may start a block tag without being tags themselves (branches and ends).
TAG_WORDS = frozenset(ALLOWED_TAGS) | {
    "elif",
    "else",
    "endif",
    "empty",
    "endfor",
    "endwith",
    "endcomment",
    "endspaceless",
    "endfilter",
}
for _name, _compile in ALLOWED_TAGS.items():
    register.tag(_name, _compile)


def _checked_size(name: str, result: Any) -> Any:
    if isinstance(result, str) and len(result) > MAX_OUTPUT_CHARS:
        raise LimitExceeded(f"the {name} filter produced more than {MAX_OUTPUT_CHARS} characters")
    if isinstance(result, (list, tuple)) and len(result) > MAX_LOOP_ITERATIONS:
        raise LimitExceeded(f"the {name} filter produced more than {MAX_LOOP_ITERATIONS} items")
    return result


def _capped(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with its result size checked. `functools.wraps` keeps `__wrapped__`, which
    Django reads to count the filter's arguments, and the is_safe/needs_autoescape flags."""

    @functools.wraps(func)
    def filter_capped(*args: Any, **kwargs: Any) -> Any:
        return _checked_size(name, func(*args, **kwargs))

    return filter_capped


def _as_temporal(name: str, value: Any) -> Any:
    """Dates arrive as ISO 8601 strings in JSON event data; Django's date filters would
    print a blank for a string, so parse it, and refuse what is not a date."""
    if value in (None, "") or isinstance(value, (date, datetime)):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise TemplateDataError(f"the {name} filter needs an ISO 8601 date") from None
        return timezone.localtime(parsed) if timezone.is_aware(parsed) else parsed
    raise TemplateDataError(f"the {name} filter needs a date")


def _date(value: Any, arg: str | None = None) -> Any:
    return django_filters.filters["date"](_as_temporal("date", value), arg)


def _time(value: Any, arg: str | None = None) -> Any:
    return django_filters.filters["time"](_as_temporal("time", value), arg)


_FLOATFORMAT_ARG = re.compile(r"-?\d{1,2}(?:g|u|gu|ug)?|g|u|gu|ug")


def _floatformat(text: Any, arg: Any = -1) -> Any:
    # The argument sets a decimal precision; a huge one allocates a huge number.
    if not _FLOATFORMAT_ARG.fullmatch(str(arg)):
        raise TemplateDataError("the floatformat filter takes at most 99 decimal places")
    return django_filters.filters["floatformat"](text, arg)


def _join(value: Any, arg: Any, autoescape: bool = True) -> Any:
    # The joined size is known before joining: refuse a huge one before allocating it.
    if isinstance(value, Collection) and isinstance(arg, str):
        items = value if not isinstance(value, str) else list(value)
        size = sum(len(item) if isinstance(item, str) else 20 for item in items)
        size += len(arg) * max(len(items) - 1, 0)
        if size > MAX_OUTPUT_CHARS:
            raise LimitExceeded(
                f"the join filter would produce more than {MAX_OUTPUT_CHARS} characters"
            )
    return django_filters.filters["join"](value, arg, autoescape=autoescape)


def _register_filter(name: str, func: Callable[..., Any], original: Callable[..., Any]) -> None:
    register.filter(
        name,
        _capped(name, func),
        is_safe=getattr(original, "is_safe", False),
        needs_autoescape=getattr(original, "needs_autoescape", False),
        expects_localtime=getattr(original, "expects_localtime", False),
    )


_PLAIN_FILTERS = (
    "add",
    "capfirst",
    "cut",
    "default",
    "default_if_none",
    "escape",
    "first",
    "force_escape",
    "iriencode",
    "last",
    "length",
    "linebreaks",
    "linebreaksbr",
    "lower",
    "pluralize",
    "slice",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "wordcount",
    "wordwrap",
    "yesno",
)
_GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "date": _date,
    "time": _time,
    "floatformat": _floatformat,
    "join": _join,
}
for _name in _PLAIN_FILTERS:
    _register_filter(_name, django_filters.filters[_name], django_filters.filters[_name])
for _name, _func in _GUARDED_FILTERS.items():
    _register_filter(_name, _func, django_filters.filters[_name])

ALLOWED_FILTERS = frozenset(register.filters)
