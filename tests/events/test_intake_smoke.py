from __future__ import annotations

from events.models import Event


def test_it_accepts_an_event(alice, make_event):
    response = alice.post_event(make_event())
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "accepted"
    assert body["duplicate"] is False
    assert Event.objects.get(uid=body["id"]).caller == f"sa:{alice.client_id}"
