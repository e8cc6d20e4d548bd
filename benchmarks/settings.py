"""The site's settings plus the benchmarks' reference views (benchmarks/urls.py); never used in production."""

from paymentsite.settings import *  # noqa: F403
from paymentsite.settings import MIDDLEWARE

ROOT_URLCONF = "benchmarks.urls"
# The payment-creation floor skips the middleware stack (see benchmarks.urls).
MIDDLEWARE = ["benchmarks.urls.FloorBeforeMiddleware", *MIDDLEWARE]
