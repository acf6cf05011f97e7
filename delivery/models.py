"""Routes, messages, attempts, and the rows that coordinate the workers.

The message table is the system of record of delivery: django-q2 only runs code, so every
state, due time, lease and fencing token lives here. A message belongs to a `Lane` (one per
caller and ordering key); the lane row is what serializes claims of one key across worker
processes (see delivery/claims.py for the claim protocol)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now

from events.models import Event
from templates.models import Channel, Template, TemplateVersion


class Route(models.Model):
    """An operator's rule: events of `event_type` are sent with the template `template_key`
    on `channel`. Several routes of one event type give several messages per event."""

    event_type = models.CharField(max_length=100, help_text="An event type name, e.g. new_match.")
    template_key = models.SlugField(max_length=100, help_text="The key of a template.")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(
        default=0, help_text="Order of the messages of one event (lowest first)."
    )
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["event_type", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_type", "template_key", "channel"], name="route_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.template_key} ({self.channel})"


class Lane(models.Model):
    """One ordering key of one caller on one channel. A claim locks this row and marks it
    busy until its message leaves `dispatching`, so two workers can never put two messages of
    a key and channel in flight (see the dispatcher). Channels have lanes of their own, so an
    email outage never holds the key's SMS (SPEC §4: ordering is per key and channel)."""

    caller = models.CharField(max_length=300)
    ordering_key = models.CharField(max_length=255)
    channel = models.CharField(max_length=20)
    # Highest sequence of this key that is done: a message of it reached a final state, or
    # its event produced no message here (no route, no address). A message with sequence s is
    # in order once done_sequence >= s - 1 (see the dispatcher).
    done_sequence = models.PositiveBigIntegerField(default=0)
    # Set to the claim's lease while a message of the lane is dispatching; cleared when it
    # leaves that state. A lease, not a flag: a lost worker's lane frees itself.
    busy_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "ordering_key", "channel"], name="lane_unique_per_channel"
            ),
        ]

    def __str__(self) -> str:
        return self.ordering_key


class MessageState(models.TextChoices):
    PENDING = "pending"
    HELD = "held"  # DISPATCH_PAUSED: kept, dispatched in order when the pause is lifted
    DISPATCHING = "dispatching"  # claimed by a worker under a lease
    SENT = "sent"
    DRY_RUN = "dry_run"  # DISABLE_SEND: rendered and recorded, nothing left; terminal
    RETRYING = "retrying"
    DEAD = "dead"  # the dead-letter queue
    EXPIRED = "expired"
    BLOCKED = "blocked"  # flag, whitelist, promotional or tier gate
    SUPPRESSED = "suppressed"  # the address opted out or bounced
    # A provider's receipt after `sent` (delivery/feedback.py): it reached the recipient, or
    # the provider gave up on it (bounce, rejection, unreachable number).
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


# States that hold their lane: a later message of the key waits while one of these exists.
ACTIVE_STATES = (
    MessageState.PENDING,
    MessageState.HELD,
    MessageState.RETRYING,
    MessageState.DISPATCHING,
)
# Active states a worker may claim (held only while the pause is off).
WAITING_STATES = (MessageState.PENDING, MessageState.HELD, MessageState.RETRYING)
FINAL_STATES = tuple(state for state in MessageState if state not in ACTIVE_STATES)
# Final states a message reaches after `sent`, on the provider's receipt: entering one is not
# a second finished message.
RECEIPT_STATES = (MessageState.DELIVERED, MessageState.UNDELIVERED)


class Message(models.Model):
    id = models.BigAutoField(primary_key=True)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Every index costs an insert on each state change (a state change is never a HOT update),
    # so foreign keys that the indexes below already cover, or that are only followed one
    # way, get none.
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    route = models.ForeignKey(
        Route, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    lane = models.ForeignKey(
        Lane, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # Copied from the route; no index (a SlugField's default gives two on PostgreSQL): no
    # query filters messages by it alone.
    template_key = models.SlugField(max_length=100, db_index=False)
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    template_version = models.ForeignKey(
        TemplateVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    # Not indexed either: the admin's search ORs it with unindexed columns (a sequential
    # scan anyway), and look-ups by recipient go to the lineage (audit_recipient).
    recipient_id = models.CharField(max_length=255)
    locale = models.CharField(max_length=35, blank=True)
    to_address = models.CharField(max_length=254)
    ordering_key = models.CharField(max_length=255)
    sequence = models.PositiveBigIntegerField(null=True, blank=True)
    # The position in the lane: the sequence, or 0 for events without one (which then go in
    # receipt order, i.e. by event id).
    lane_order = models.PositiveBigIntegerField(default=0)
    state = models.CharField(
        max_length=12, choices=MessageState.choices, default=MessageState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    # The event's arrival, and when a missing predecessor stops holding this message back.
    received_at = models.DateTimeField()
    gap_until = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Fencing token: incremented by every claim; a result is written only by the claim that
    # holds the current token, so a worker whose lease ran out cannot overwrite a newer one.
    lease_token = models.PositiveBigIntegerField(default=0)
    # The liveness record (a WorkerLease name) of the worker of the last claim: while the
    # message is dispatching and that record has run out, the claim is recovered before its
    # lease ends (delivery/liveness.py). Empty for a claim made without one (lease only).
    claimed_by = models.CharField(max_length=50, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    rendered_hash = models.CharField(max_length=64, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            # An event can never produce a message twice, whatever races the workers run.
            models.UniqueConstraint(fields=["event", "route"], name="message_event_route"),
        ]
        indexes = [
            # Due work, in due order.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="message_due",
                condition=models.Q(state__in=WAITING_STATES),
            ),
            # The active messages of a lane in lane order: finds a lane's head.
            models.Index(
                fields=["lane", "lane_order", "event", "id"],
                name="message_lane_active",
                condition=models.Q(state__in=ACTIVE_STATES),
            ),
            models.Index(
                fields=["lease_until"],
                name="message_leased",
                condition=models.Q(state="dispatching"),
            ),
            models.Index(
                fields=["expires_at"],
                name="message_expiring",
                condition=models.Q(state__in=WAITING_STATES, expires_at__isnull=False),
            ),
            # The dead-letter queue, its retention purge and the DLQ ratio.
            models.Index(fields=["state", "updated_at"], name="message_state_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.uid} [{self.state}]"


class DeadLetter(Message):
    """The dead-letter queue as its own admin screen: dead messages, read-only."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


class AttemptOutcome(models.TextChoices):
    SENT = "sent"
    TRANSIENT = "transient_error"
    PERMANENT = "permanent_error"
    # The worker's lease ran out before it recorded a result (killed, hung): unknown outcome.
    ABANDONED = "abandoned"


class Attempt(models.Model):
    """One call to a provider (or one lost claim), with the provider's answer."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    lease_token = models.PositiveBigIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_default=Now())
    outcome = models.CharField(max_length=20, choices=AttemptOutcome.choices)
    provider = models.CharField(max_length=50, blank=True)
    response_code = models.CharField(max_length=50, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # What the provider received to recognise a resend of the same message (the email
    # Message-ID and the gateway's Idempotency-Key derive from it).
    idempotency_key = models.CharField(max_length=100, blank=True)
    # The claim's result could not be recorded because a newer claim owned the message.
    stale = models.BooleanField(default=False)
    # The provider's id of what this attempt handed over (the SMTP Message-ID we set, the
    # ESP's id, the SMS gateway's sid): what its delivery receipts name.
    provider_message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["provider_message_id"],
                name="attempt_provider_message_id",
                condition=~models.Q(provider_message_id=""),
            ),
        ]
        # Not unique per (message, lease_token): when a lease runs out, recovery records the
        # claim as abandoned, and the slow worker that held it may still report what really
        # happened (its row then says stale). Both are facts about the same claim.
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.message_id}: {self.outcome}"


class Suppression(models.Model):
    """An address that must not be sent to (opt-out, bounce, complaint). Checked before each
    send (delivery/gates.py): `all` stops every message to it on that channel, `promotional`
    only messages of promotional templates, so receipts and deadlines still reach someone
    who opted out of marketing. There is no transactional-only category: a recipient who
    refuses transactional mail refuses all of it (and promotional mail is sent only where
    transactional is welcome), so that wish is `all`."""

    class Reason(models.TextChoices):
        OPT_OUT = "opt_out"
        BOUNCE = "bounce"
        COMPLAINT = "complaint"
        MANUAL = "manual"

    class Category(models.TextChoices):
        ALL = "all", "all messages"
        PROMOTIONAL = "promotional", "promotional messages only"

    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=254, help_text="Email address or E.164 number.")
    category = models.CharField(max_length=12, choices=Category.choices, default=Category.ALL)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.OPT_OUT)
    source = models.CharField(
        max_length=120,
        blank=True,
        help_text="Who or what added it: api:<service account>, admin:<user>, provider:<name>, "
        "inbound-sms, …",
    )
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "address", "category"], name="suppression_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} suppression #{self.pk} ({self.category})"


class ReceiptKind(models.TextChoices):
    """A provider's report about a message it accepted, normalised (delivery/feedback.py)."""

    DELIVERED = "delivered"
    BOUNCED_HARD = "bounced_hard"
    BOUNCED_SOFT = "bounced_soft"
    COMPLAINED = "complained"
    REJECTED = "rejected"  # the provider refused to send it on (its own policy)
    FAILED = "failed"  # the provider gave up without a reason that suppresses
    OPTED_OUT = "opted_out"
    UNDELIVERABLE_NUMBER = "undeliverable_number"  # not a mobile number, a landline


class ProviderReceipt(models.Model):
    """One delivery receipt as the provider sent it, kept once (`dedupe_key`): a replayed or
    repeated receipt finds its row and changes nothing. A receipt whose attempt is not
    recorded yet (the provider's callback overtook our commit) waits as `pending` until
    `feedback_apply_pending` finds the attempt. Holds no address: `address_hash` (SHA-256
    of the address as suppressions compare it) counts soft bounces per address."""

    class State(models.TextChoices):
        PENDING = "pending"  # no attempt of this provider id recorded yet
        APPLIED = "applied"  # moved the message and/or added a suppression
        RECORDED = "recorded"  # matched, but changed nothing (dry run, dead, no edge)
        UNMATCHED = "unmatched"  # still no attempt after FEEDBACK_PENDING_HOURS

    id = models.BigAutoField(primary_key=True)
    dedupe_key = models.CharField(max_length=400, unique=True)
    provider = models.CharField(max_length=50)
    provider_message_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=24, choices=ReceiptKind.choices)
    code = models.CharField(max_length=50, blank=True)
    source = models.CharField(max_length=50)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(db_default=Now())
    state = models.CharField(max_length=12, choices=State.choices)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    address_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["received_at"],
                name="receipt_pending",
                condition=models.Q(state="pending"),
            ),
            models.Index(fields=["address_hash", "kind", "received_at"], name="receipt_address"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} [{self.state}]"


class WorkerLease(models.Model):
    """A named lease shared by every worker process: the single ticker, a row to lock so
    only one worker expands the outbox at a time (keeps receipt order per key), and one
    liveness record (`worker:…`) per dispatching worker process (delivery/liveness.py)."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=100, blank=True)
    until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class ProviderCircuit(models.Model):
    """A provider found down (delivery/circuit.py): while `open_until` is ahead no worker
    claims its messages; once it has passed, one message goes out as the probe. Shared by
    every worker so that an outage is detected once, not by every message."""

    provider = models.CharField(max_length=50, primary_key=True)
    opened_at = models.DateTimeField()
    open_until = models.DateTimeField()

    def __str__(self) -> str:
        return self.provider


class RateBucket(models.Model):
    """A shared rate limiter (GCRA): `tat` is the theoretical arrival time of the next send.
    One row per limit ("global", "provider:<name>"), so every worker process and node draws
    from the same budget."""

    name = models.CharField(max_length=60, primary_key=True)
    tat = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class MessageTally(models.Model):
    """Changes of the number of messages in each state, written by triggers on the message
    table (migration 0003), never by our code: `net` is +1 on entering a state and -1 on
    leaving it (or on delete), `entered` counts entries, in the hour (`hour`, since the
    epoch) they happened. `delivery.tally` sums them for /metrics and folds them into one row
    per state and hour, so a scrape reads a few hundred rows whatever the message count."""

    id = models.BigAutoField(primary_key=True)
    state = models.CharField(max_length=12)
    hour = models.BigIntegerField()
    net = models.BigIntegerField()
    entered = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.state} {self.hour}: {self.net:+d}"
