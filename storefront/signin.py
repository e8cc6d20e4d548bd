"""
Sign-in throttling (django-axes, configured in settings): which address a
sign-in comes from, and the page a locked-out sign-in gets, for the customers'
sign-in (/accounts/login/) and the admin's alike.
"""

from django.conf import settings
from django.shortcuts import render


def client_address(request) -> str:
    """
    The address a request comes from. X-Forwarded-For is anyone's to write, so
    it is read only when settings.BEHIND_PROXY says a proxy in front of the
    site sets it; then the last entry, the one that proxy appended, is the
    client's. Otherwise the connection's own address.
    """
    if settings.BEHIND_PROXY:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded[-1]:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR", "")


def locked_out(request, original_response=None, credentials=None):
    """The answer to a sign-in while its account or its address is locked: 429, with how long it lasts."""
    minutes = settings.SIGNIN_LOCKOUT_MINUTES
    response = render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response
