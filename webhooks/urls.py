from django.urls import path

from webhooks import views

urlpatterns = [
    path("stripe/", views.stripe_webhook, name="stripe-webhook"),
]
