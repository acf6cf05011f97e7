from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from comcenter import ops
from delivery.apis import SuppressionApi
from delivery.feedback_email import tracking_urlpatterns
from delivery.feedback_sms import SmsInboundApi, SmsStatusApi
from events.apis import EventDetailApi, EventListCreateApi
from events.webhooks import WebhookApi
from identity.apis import TokenApi

urlpatterns = [
    path("api/v1/auth/token", TokenApi.as_view(), name="auth-token"),
    path("api/v1/events", EventListCreateApi.as_view(), name="events"),
    path("api/v1/events/<uuid:event_id>", EventDetailApi.as_view(), name="event-detail"),
    path("api/v1/webhooks/<str:source>", WebhookApi.as_view(), name="webhook"),
    path("api/v1/suppressions", SuppressionApi.as_view(), name="suppressions"),
    path("api/v1/feedback/sms", SmsStatusApi.as_view(), name="feedback-sms"),
    path("api/v1/feedback/sms/inbound", SmsInboundApi.as_view(), name="feedback-sms-inbound"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file, not inline, for the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("health", ops.health, name="health"),
    path("health/live", ops.health_live, name="health-live"),
    path("canary", ops.canary, name="canary"),
    path("metrics", ops.metrics, name="metrics"),
]

# anymail's tracking webhooks at its standard URLs (/anymail/<esp>/tracking/), for the ESPs
# of EMAIL_TRACKING_ESPS (delivery/feedback_email.py).
urlpatterns.append(
    path("anymail/", include((tracking_urlpatterns(settings.EMAIL_TRACKING_ESPS), "anymail")))
)

handler400 = "comcenter.lib.errors.handler400"
handler403 = "comcenter.lib.errors.handler403"
handler404 = "comcenter.lib.errors.handler404"
handler500 = "comcenter.lib.errors.handler500"
