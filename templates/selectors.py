"""Finding the template for a recipient's locale."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from templates.models import Template

FALLBACK_LOCALE = "en"


def locale_normalize(locale: str | None) -> str:
    """Lower case with hyphens ("pt_BR" and "PT-br" both become "pt-br"), for comparing."""
    return (locale or "").strip().replace("_", "-").lower()


def template_for(*, key: str, locale: str | None) -> Template | None:
    """The template `key` in the best locale for `locale`, compared case-insensitively:
    the exact locale, then its language ("pt" for "pt-BR"), then another region of that
    language ("pt-PT" for "pt-BR"), then "en", then another English, then any locale (the
    first in locale order, so the choice is stable). Disabled templates are returned too:
    the dispatcher records them as blocked rather than looking elsewhere."""
    return template_choose(templates_by_key(keys=[key]).get(key, []), locale=locale)


def templates_by_key(*, keys: Iterable[str]) -> dict[str, list[Template]]:
    """Every locale of each template of `keys` (with its current version), in locale order:
    one query for a batch's templates instead of one per template key, read fresh each time
    (enabled, whitelisted, tier and category are what the gates decide by)."""
    found: dict[str, list[Template]] = {}
    for template in (
        Template.objects.filter(key__in=set(keys))
        .select_related("current_version")
        .order_by("key", "locale")
    ):
        found.setdefault(template.key, []).append(template)
    return found


def template_choose(candidates: Sequence[Template], *, locale: str | None) -> Template | None:
    """`template_for`'s choice among the locales of one key (`candidates` in locale order)."""
    if not candidates:
        return None
    by_locale = {locale_normalize(t.locale): t for t in candidates}
    wanted = locale_normalize(locale)
    language = wanted.split("-")[0]
    for exact in (wanted, language, FALLBACK_LOCALE):
        if exact and exact in by_locale:
            return by_locale[exact]
        for name, template in by_locale.items():
            if exact and name.split("-")[0] == exact:
                return template
    return candidates[0]
