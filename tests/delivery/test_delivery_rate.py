"""The delivery rate: delivered over delivered + undelivered receipts, from the tally (no
count of the message table), on /metrics and the dashboard panel; receipts counted by
provider, kind and outcome."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from delivery.feedback import Feedback, feedback_receive
from delivery.models import Attempt, Message
from delivery.selectors import queue_stats
from tests.delivery.conftest import run_pump


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def report(accept, kind: str) -> None:
    event = accept()
    run_pump()
    attempt = Attempt.objects.get(message=Message.objects.get(event=event))
    feedback_receive(
        feedback=Feedback(
            provider="email",
            provider_message_id=attempt.provider_message_id,
            kind=kind,
            source="test",
        )
    )


def test_it_has_no_rate_before_the_first_receipt(email_only, accept, live, smtp_server):
    accept()
    run_pump()

    stats = queue_stats()

    assert stats["delivery_rate"] is None
    assert (stats["delivered"], stats["undelivered"]) == (0, 0)


def test_it_reports_the_rate_on_metrics_and_the_dashboard(
    email_only,
    accept,
    live,
    smtp_server,
    client,
    settings,
    olivia,
    django_capture_on_commit_callbacks,
):
    settings.TRUST_PROXY_HEADERS = False  # /metrics open to loopback
    before = scrape(client)
    # The outcome counters count after commit.
    with django_capture_on_commit_callbacks(execute=True):
        for kind in ("delivered", "delivered", "delivered", "bounced_hard"):
            report(accept, kind)
    # Four messages sent, four receipts: the DLQ ratio does not count a message twice.
    stats = queue_stats()
    assert stats["delivery_rate"] == 0.75
    assert (stats["delivered"], stats["undelivered"]) == (3, 1)
    assert stats["dlq_ratio"] == 0.0

    after = scrape(client)

    assert after[("comcenter_delivery_rate", ())] == 0.75
    delivered = ("comcenter_deliveries_total", (("channel", "email"), ("provider", "email")))
    key = (delivered[0], (*delivered[1], ("state", "delivered")))
    assert after[key] - before.get(key, 0.0) == 3
    receipts = (
        "comcenter_feedback_receipts_total",
        (("kind", "bounced_hard"), ("outcome", "applied"), ("provider", "email")),
    )
    assert after[receipts] - before.get(receipts, 0.0) == 1
    panel = olivia.get("/admin/console/panel/")
    assert "0.750 (3 delivered, 1 undelivered)" in panel.text
