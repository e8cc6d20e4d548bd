from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from paymentsite.health import healthz
from storefront import views as checkout

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("admin/", admin.site.urls),
    path("api/", include("payments.urls")),
    path("api/", include("refunds.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("webhooks/", include("webhooks.urls")),
    path("healthz", healthz, name="healthz"),
    path("api/", include(checkout.api_urlpatterns)),
    path("checkout/", include(checkout.urlpatterns)),
    # Customers sign in here: the admin's login refuses anyone who is not staff.
    path("accounts/login/", auth_views.LoginView.as_view(next_page="/checkout/"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
]

handler404 = "core.api.api_not_found"
# Under /api/ every error answers JSON with a `code`, even those Django answers itself.
handler400 = "core.api.api_bad_request"
handler403 = "core.api.api_permission_denied"
handler500 = "core.api.api_server_error"
