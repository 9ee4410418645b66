"""URLs: /api/ (REST, token or session auth), /api/schema/ + /api/docs/ (OpenAPI), browser pages.

Errors: JSON under /api/, a short HTML page elsewhere (facecurate.errors)."""
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from facecurate.accounts.views import LoginView, TokenView
from facecurate.datasets.api import DatasetViewSet, FaceViewSet, IdentityViewSet, ImageViewSet
from facecurate.jobs.api import JobViewSet
from facecurate.recognition.api import RecognizerViewSet, RetrainingViewSet
from facecurate.runs.api import ClusterViewSet, ReviewActionViewSet, RunViewSet
from facecurate.web import views
from facecurate.web.retrain_views import retrain_page

router = DefaultRouter()
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("identities", IdentityViewSet, basename="identity")
router.register("images", ImageViewSet, basename="image")
router.register("faces", FaceViewSet, basename="face")
router.register("jobs", JobViewSet, basename="job")
router.register("runs", RunViewSet, basename="run")
router.register("clusters", ClusterViewSet, basename="cluster")
router.register("recognizers", RecognizerViewSet, basename="recognizer")
router.register("retrainings", RetrainingViewSet, basename="retraining")
router.register("review-actions", ReviewActionViewSet, basename="review-action")

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url=settings.STATIC_URL + "facecurate/favicon.svg", permanent=True)),
    path("api/", include(router.urls)),
    path("api/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("media/<path:path>", views.media, name="media"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-page"),
    path("retrain/", retrain_page, name="retrain-page"),
    path("runs/<int:pk>/", views.run_report, name="run-page"),
    path("runs/<int:pk>/review/", views.run_queue, name="queue-page"),
    path("runs/<int:pk>/merges/", views.merge_queue, name="merges-page"),
    path("runs/<int:pk>/guided/", views.guided_review, name="guided-page"),
    path("clusters/<int:pk>/", views.cluster_review, name="cluster-page"),
    path("", views.dataset_list, name="home"),
    path("admin/", admin.site.urls),
]

handler400 = "facecurate.errors.handler400"
handler403 = "facecurate.errors.handler403"
handler404 = "facecurate.errors.handler404"
handler500 = "facecurate.errors.handler500"
