from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # anymail's tracking webhooks report through its signal; the receiver only
        # normalises and calls delivery.feedback (the logic is there, not in a signal).
        from anymail.signals import tracking

        from delivery.feedback_email import tracking_received

        tracking.connect(tracking_received, dispatch_uid="delivery.feedback_email")
