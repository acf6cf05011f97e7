from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from events.apis import EventDetailApi, EventListCreateApi, TokenApi

urlpatterns = [
    path("api/v1/auth/token", TokenApi.as_view(), name="auth-token"),
    path("api/v1/events", EventListCreateApi.as_view(), name="events"),
    path("api/v1/events/<uuid:event_id>", EventDetailApi.as_view(), name="event-detail"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]

handler400 = "comcenter.errors.handler400"
handler403 = "comcenter.errors.handler403"
handler404 = "comcenter.errors.handler404"
handler500 = "comcenter.errors.handler500"
