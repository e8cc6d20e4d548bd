"""dj-stripe's URLs: its webhook endpoint at /stripe/webhook/<uuid>/."""

from django.urls import include, path

urlpatterns = [path("stripe/", include("djstripe.urls", namespace="djstripe"))]
