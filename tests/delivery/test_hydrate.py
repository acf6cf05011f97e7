"""claims.hydrate: a batch's messages as the ORM's queryset gives them (PostgreSQL reads
them by a prepared statement built once, transition_sql.instances_by_pks)."""

from __future__ import annotations

import pytest

from delivery.claims import _EVENT_DEFERRED, hydrate
from delivery.models import Message
from delivery.outbox import outbox_expand
from templates.models import Template

pytestmark = pytest.mark.usefixtures("pending_expansion")


def _orm(ids: list[int]) -> list[Message]:
    return list(
        Message.objects.filter(pk__in=ids)
        .select_related("event", "template__current_version")
        .defer(*_EVENT_DEFERRED)
        .order_by("next_attempt_at", "id")
    )


def test_it_hydrates_a_batch_as_the_orm_would(routes, accept):
    for n in range(3):
        accept(ordering_key=f"k-{n}", data={"seq": n, "scholarship": "S", "deadline": "d"})
    outbox_expand()
    # One message without a template (its route's template was never made).
    first_sms = Message.objects.filter(channel="sms").order_by("id").first()
    assert first_sms is not None
    Message.objects.filter(pk=first_sms.pk).update(template=None)
    ids = list(Message.objects.order_by("-id").values_list("id", flat=True))

    hydrated = hydrate(ids)
    expected = _orm(ids)

    assert [m.pk for m in hydrated] == [m.pk for m in expected]
    assert len(hydrated) == 6
    for got, want in zip(hydrated, expected, strict=True):
        fields = [f.attname for f in Message._meta.concrete_fields]
        assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
        assert got.get_deferred_fields() == want.get_deferred_fields() == set()
        assert Message.event.is_cached(got)
        assert got.event.get_deferred_fields() == want.event.get_deferred_fields()
        assert (got.event.uid, got.event.data) == (want.event.uid, want.event.data)
        if want.template is None:
            assert got.template is None
        else:
            assert isinstance(got.template, Template)
            assert got.template.current_version == want.template.current_version
            assert got.template.current_version.body == want.template.current_version.body


def test_it_hydrates_nothing_without_a_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert hydrate([]) == []
