"""The eight flags: their default, what they do, and which value is the safe one.

The safe value decides precedence: an environment variable that sets a flag to its safe
value cannot be overridden from the admin or the command ("a flag that makes things
safer wins from any source"). "Safe" means "less leaves the building":

- DISABLE_SEND, DISPATCH_PAUSED, INTAKE_PAUSED, RATE_LIMIT_ENABLED, SAFE_MODE are safe when
  on (a paused intake refuses events, so nothing new can be sent);
- PROMO_SENDS and AUTOMATION_ENABLED are safe when off;
- RETRIES_ENABLED is safe when off. Retrying is kinder to recipients of a flaky provider,
  but every retry is one more send attempt; during an incident (a provider accepting mail and
  reporting failure, a loop of duplicates) the operator's lever must be to send less, so an
  environment that turns retries off keeps them off. Failures then go to the dead-letter
  queue, where nothing is lost and an operator can requeue them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlagDefinition:
    name: str
    default: bool
    safe: bool
    description: str


FLAGS: dict[str, FlagDefinition] = {
    definition.name: definition
    for definition in (
        FlagDefinition(
            name="DISABLE_SEND",
            default=True,
            safe=True,
            description="Kill switch and dry run: messages render and are recorded dry_run; "
            "nothing leaves.",
        ),
        FlagDefinition(
            name="DISPATCH_PAUSED",
            default=False,
            safe=True,
            description="Receive and queue: messages stay held and are dispatched in order "
            "when lifted.",
        ),
        FlagDefinition(
            name="INTAKE_PAUSED",
            default=False,
            safe=True,
            description="POST /api/v1/events and the webhooks answer 503 intake_paused with "
            "Retry-After and store nothing (set by the guard or an operator).",
        ),
        FlagDefinition(
            name="PROMO_SENDS",
            default=False,
            safe=False,
            description="Allows promotional templates; when off they are blocked.",
        ),
        FlagDefinition(
            name="RETRIES_ENABLED",
            default=True,
            safe=False,
            description="Transient failures retry with backoff; when off the first failure "
            "goes to the dead-letter queue.",
        ),
        FlagDefinition(
            name="RATE_LIMIT_ENABLED",
            default=True,
            safe=True,
            description="Applies SEND_RATE_PER_MINUTE, globally and per provider.",
        ),
        FlagDefinition(
            name="AUTOMATION_ENABLED",
            default=False,
            safe=False,
            description="Allows customer-facing auto-replies (support routing).",
        ),
        FlagDefinition(
            name="SAFE_MODE",
            default=True,
            safe=True,
            description="Forces route-only: no auto-replies whatever else says.",
        ),
    )
}


def flag_definition(name: str) -> FlagDefinition:
    """The definition of a flag; an unknown name raises KeyError naming it."""
    try:
        return FLAGS[name]
    except KeyError:
        raise KeyError(name) from None
