"""The site's settings plus the benchmarks' reference views (benchmarks/urls.py); never used in production."""

from paymentsite.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"
