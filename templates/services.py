"""Writes to templates: creation, new versions, whitelist and enable switches, all audited.

Versions are immutable: there is no function that changes one. Editing a template's content
creates version N+1 and points `current_version` at it; messages keep pointing at the
version they were rendered from."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, QuerySet
from django.db.models.functions import Now

from audit.services import audit_append
from comcenter.lib.hashing import json_hash
from templates.models import Category, Template, TemplateVersion, Tier
from templates.rendering import validate_source
from templates.selectors import locale_normalize

CONTENT_FIELDS = ("subject", "body", "html")
# A switch's reason is kept in its lineage row; as long as a flag change's reason may be.
SWITCH_REASON_MAX_LENGTH = 500
# Fields that change the head only; no new version.
SETTINGS_FIELDS = ("category", "tier", "description", "sample_data")
_LOCALE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


def source_hash(*, subject: str, body: str, html: str) -> str:
    """The hash of a version's source (not of a render)."""
    return json_hash({"subject": subject, "body": body, "html": html})


def locale_clean(locale: str) -> str:
    """The locale as stored ("pt_BR" becomes "pt-BR"); ValidationError if it is not one."""
    cleaned = locale.strip().replace("_", "-")
    if not _LOCALE.match(cleaned):
        raise ValidationError({"locale": "A locale looks like en, pt or pt-BR."})
    return cleaned


def _locale_taken(*, key: str, locale: str, queryset: QuerySet[Template]) -> bool:
    """Whether `key` has a template whose locale equals `locale` ignoring case: "pt-BR" and
    "pt-br" would both match a recipient in pt-BR, so only one may exist."""
    wanted = locale_normalize(locale)
    return any(locale_normalize(t.locale) == wanted for t in queryset.filter(key=key))


def template_locale_taken(*, key: str, locale: str) -> bool:
    return _locale_taken(key=key, locale=locale, queryset=Template.objects.all())


def _validate_settings(*, category: str, tier: int, sample_data: Any) -> None:
    errors: dict[str, str] = {}
    if category not in Category.values:
        errors["category"] = f"Unknown category {category!r}."
    if tier not in Tier.values:
        errors["tier"] = f"Unknown tier {tier!r}."
    if not isinstance(sample_data, dict):
        errors["sample_data"] = "Sample data must be a JSON object."
    if errors:
        raise ValidationError(errors)


def template_create(
    *,
    key: str,
    channel: str,
    locale: str = "en",
    category: str = Category.TRANSACTIONAL,
    tier: int = Tier.ROUTE_ONLY,
    subject: str = "",
    body: str,
    html: str = "",
    enabled: bool = True,
    whitelisted: bool = False,
    description: str = "",
    sample_data: dict[str, Any] | None = None,
    actor: str = "",
) -> Template:
    """A new template with its version 1. Raises ValidationError with per-field messages."""
    locale = locale_clean(locale)
    sample_data = {} if sample_data is None else sample_data
    validate_source(channel=channel, subject=subject, body=body, html=html)
    _validate_settings(category=category, tier=tier, sample_data=sample_data)
    template = Template(
        key=key,
        channel=channel,
        locale=locale,
        category=category,
        tier=tier,
        subject=subject,
        body=body,
        html=html,
        enabled=enabled,
        whitelisted=whitelisted,
        description=description,
        sample_data=sample_data,
    )
    template.full_clean(exclude=["current_version"], validate_constraints=False)
    with transaction.atomic():
        # Locking the key's rows orders concurrent creations in other locales of that key.
        if _locale_taken(key=key, locale=locale, queryset=Template.objects.select_for_update()):
            raise ValidationError({"locale": f"{key} already has a template for {locale}."})
        template.save(force_insert=True)
        version = TemplateVersion.objects.create(
            template=template,
            number=1,
            subject=subject,
            body=body,
            html=html,
            content_hash=source_hash(subject=subject, body=body, html=html),
            created_by=actor,
        )
        template.current_version = version
        template.save(update_fields=["current_version"])
        audit_append(
            kind="template.created",
            actor=actor,
            data={
                "template_id": template.pk,
                "key": key,
                "locale": locale,
                "channel": channel,
                "version": 1,
                "content_hash": version.content_hash,
                "enabled": enabled,
                "whitelisted": whitelisted,
            },
        )
    return template


def template_update(*, template: Template, actor: str, **changes: Any) -> TemplateVersion | None:
    """Apply `changes` (subject, body, html, and the settings category, tier, description,
    sample_data). A content change creates a new version, which is returned; settings alone
    change the head and return None. Raises ValidationError, TypeError for other fields."""
    unknown = set(changes) - set(CONTENT_FIELDS) - set(SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"template_update cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        # The lock orders concurrent edits, so version numbers are taken one at a time and
        # each new version is compared with the content really current.
        locked = Template.objects.select_for_update().get(pk=template.pk)
        current = (
            TemplateVersion.objects.get(pk=locked.current_version_id)
            if locked.current_version_id
            else None
        )
        content = {
            field: changes.get(field, getattr(current, field) if current else "")
            for field in CONTENT_FIELDS
        }
        settings_now = {
            field: changes.get(field, getattr(locked, field)) for field in SETTINGS_FIELDS
        }
        validate_source(channel=locked.channel, **content)
        _validate_settings(
            category=settings_now["category"],
            tier=settings_now["tier"],
            sample_data=settings_now["sample_data"],
        )
        content_changed = current is None or any(
            getattr(current, field) != value for field, value in content.items()
        )
        changed_settings = [f for f in SETTINGS_FIELDS if getattr(locked, f) != settings_now[f]]
        if not content_changed and not changed_settings:
            return None

        version = None
        update_fields = ["updated_at", *changed_settings]
        if content_changed:
            number = (locked.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = TemplateVersion.objects.create(
                template=locked,
                number=number,
                content_hash=source_hash(**content),
                created_by=actor,
                **content,
            )
            template.current_version = version
            update_fields += ["current_version", *CONTENT_FIELDS]
        for field, value in {**content, **settings_now}.items():
            setattr(template, field, value)
        template.updated_at = Now()
        template.save(update_fields=update_fields)
        audit_append(
            kind="template.updated",
            actor=actor,
            data={
                "template_id": template.pk,
                "key": template.key,
                "locale": template.locale,
                "version": version.number if version else None,
                "content_hash": version.content_hash if version else None,
                "changed_settings": changed_settings,
            },
        )
    template.refresh_from_db(fields=["updated_at"])
    return version


def _template_switch(
    *, template: Template, field: str, value: bool, actor: str, reason: str = ""
) -> bool:
    with transaction.atomic():
        # Conditional UPDATE: the row count says whether this call changed anything, so two
        # operators flipping the same switch record one change, not two.
        changed = (
            Template.objects.filter(pk=template.pk)
            .exclude(**{field: value})
            .update(**{field: value, "updated_at": Now()})
        )
        if changed:
            audit_append(
                kind=f"template.{field}",
                actor=actor,
                data={
                    "template_id": template.pk,
                    "key": template.key,
                    "locale": template.locale,
                    field: value,
                    **({"reason": reason} if reason else {}),
                },
            )
    setattr(template, field, value)
    return bool(changed)


def template_set_whitelisted(
    *, template: Template, value: bool, actor: str, reason: str = ""
) -> bool:
    """Whitelist (or not) a template for sending; True if this call changed it."""
    return _template_switch(
        template=template, field="whitelisted", value=value, actor=actor, reason=reason
    )


def template_set_enabled(*, template: Template, value: bool, actor: str, reason: str = "") -> bool:
    """Enable or disable a template; True if this call changed it."""
    return _template_switch(
        template=template, field="enabled", value=value, actor=actor, reason=reason
    )
