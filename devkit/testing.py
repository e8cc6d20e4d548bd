"""
Loaded by pytest before Django's settings (`-p devkit.testing` in pytest.ini):
gives the test run its own non-secret keys, since settings refuse to start
without them when DEBUG is off, as in production.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paymentsite.settings")
# A developer's .env (written by `make run`, DEBUG on) must not change what the tests check.
os.environ["ENV_FILE"] = ""
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paymentsite")
# 50+ characters: settings refuse a shorter key when DEBUG is off.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-0123456789abcdef")
# The test client speaks plain HTTP; with DEBUG off HTTPS would otherwise be on (301 to https).
os.environ.setdefault("SECURE_SSL", "false")
# Many tests make bursts of payments and refunds; the throttle tests turn throttling on themselves.
os.environ.setdefault("API_THROTTLING", "false")
os.environ.setdefault("STRIPE_SECRET_KEY", "sk_test_paymentsite_tests")
os.environ.setdefault("STRIPE_PUBLISHABLE_KEY", "pk_test_paymentsite_tests")
os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_paymentsite_tests")
os.environ.setdefault("STRIPE_TIMEOUT", "3")
# Never the real Stripe: a test that forgets the local Stripe (`fake_stripe`) gets a refused connection.
os.environ.setdefault("STRIPE_API_BASE", "http://127.0.0.1:9")
# The development kit's app (`manage.py localstripe`), as in development.
os.environ.setdefault("DEVKIT", "true")
