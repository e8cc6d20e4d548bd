"""
Django set up in this process for a benchmark that drives the site with Django's
test client (no server, no Stripe): import this module before any model.

    import benchmarks.in_process  # noqa: F401  (sets Django up)

The settings refuse to start without a secret key and a Stripe key outside DEBUG;
these values are for benchmarks only and reach nothing. Django's test client
speaks plain HTTP, so SECURE_SSL is off; whitenoise warns about STATIC_ROOT,
which only `collectstatic` makes.
"""

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paymentsite.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("SECURE_SSL", "false")
os.environ.setdefault("STRIPE_SECRET_KEY", "sk_test_benchmark")
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()
