from django.urls import path

from notifications import api

urlpatterns = [
    path("events/", api.EventFeedView.as_view(), name="event-feed"),
]
