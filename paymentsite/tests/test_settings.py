"""
Settings that fail closed. Each test imports paymentsite.settings in a fresh
process with an environment chosen here (nothing of the test run's own), and
reads back what it made of it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "Jx8#qL2!vR9@tZ4$wM7^pN3&hS6*kD5(fG1)bC0-yA+uE=Wo_Ri]Nt[Ml"
PRODUCTION = {"DEBUG": "false", "DJANGO_SECRET_KEY": GOOD_KEY, "STRIPE_SECRET_KEY": "sk_live_productionlike"}
# Print the settings named on the command line as JSON.
READ_SETTINGS = """
import json, sys
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in sys.argv[1:]}, default=str))
"""


def clean_environment(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without anything the settings read (see README_VARIABLES), plus `env`."""
    kept = {k: v for k, v in os.environ.items() if k not in README_VARIABLES and not k.startswith("DJANGO")}
    return {**kept, "ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "paymentsite.settings", **env}


def run_settings(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", READ_SETTINGS, *names],
        cwd=ROOT,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_with(env: dict[str, str], *names: str) -> dict:
    result = run_settings(env, *names)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def readme_variables() -> set[str]:
    """The variables in the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n\n", 2)[2]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, re.M))


README_VARIABLES = readme_variables()


# --- HTTPS -----------------------------------------------------------------------


def test_with_debug_off_https_is_on_without_being_asked():
    found = settings_with(
        PRODUCTION,
        "SECURE_SSL",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
    )

    assert found == {
        "SECURE_SSL": True,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
    }


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"DEBUG": "true"}, False),
        ({**PRODUCTION, "SECURE_SSL": "false"}, False),
        ({"DEBUG": "true", "SECURE_SSL": "true"}, True),
    ],
)
def test_https_is_off_only_in_debug_or_when_said_so(env, expected):
    assert settings_with(env, "SECURE_SSL", "SECURE_SSL_REDIRECT") == {
        "SECURE_SSL": expected,
        "SECURE_SSL_REDIRECT": expected,
    }


# --- Proxy headers -------------------------------------------------------------------


def test_x_forwarded_proto_is_not_believed_by_default_even_with_https_on():
    assert settings_with(PRODUCTION, "SECURE_PROXY_SSL_HEADER", "BEHIND_PROXY") == {
        "SECURE_PROXY_SSL_HEADER": None,
        "BEHIND_PROXY": False,
    }


def test_x_forwarded_proto_is_believed_when_a_proxy_is_said_to_be_in_front():
    found = settings_with({**PRODUCTION, "BEHIND_PROXY": "true"}, "SECURE_PROXY_SSL_HEADER")

    assert found == {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}


# --- The secret key --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, complaint",
    [
        ("django-insecure-" + "k7#pQ2!x" * 8, "`django-insecure-` development key"),
        ("short-but-random-Jx8#qL2!vR9@tZ4", "too weak"),
        ("a" * 60, "too weak"),
    ],
)
def test_with_debug_off_a_weak_secret_key_refuses_to_start_without_showing_it(key, complaint):
    result = run_settings({**PRODUCTION, "DJANGO_SECRET_KEY": key}, "SECRET_KEY")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert complaint in result.stderr
    assert key not in result.stderr + result.stdout


def test_with_debug_off_a_long_random_key_starts():
    assert settings_with(PRODUCTION, "SECRET_KEY") == {"SECRET_KEY": GOOD_KEY}


def test_with_debug_on_the_development_key_is_used():
    found = settings_with({"DEBUG": "true"}, "SECRET_KEY")

    assert found["SECRET_KEY"].startswith("django-insecure-")


# --- Throttling ------------------------------------------------------------------------


def test_throttle_rates_and_sign_in_limits_come_from_the_environment():
    env = {
        **PRODUCTION,
        "THROTTLE_PAYMENT_CREATE": "5/minute",
        "THROTTLE_REFUND_CREATE": "off",
        "SIGNIN_FAILURE_LIMIT": "4",
        "SIGNIN_LOCKOUT_MINUTES": "30",
    }

    found = settings_with(env, "API_THROTTLE_RATES", "AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME", "API_THROTTLING")

    assert found["API_THROTTLE_RATES"]["payment_create"] == "5/minute"
    assert found["API_THROTTLE_RATES"]["refund_create"] is None
    assert found["API_THROTTLE_RATES"]["payment_card"] == "20/minute"
    assert found["AXES_FAILURE_LIMIT"] == 4
    assert found["AXES_COOLOFF_TIME"] == "0:30:00"
    assert found["API_THROTTLING"] is True


@pytest.mark.parametrize("variable, value", [("THROTTLE_PAYMENT_CARD", "lots"), ("SIGNIN_FAILURE_LIMIT", "0")])
def test_a_bad_throttle_setting_refuses_to_start(variable, value):
    result = run_settings({**PRODUCTION, variable: value}, "API_THROTTLE_RATES")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


# --- The environment wins over .env (what `make run PORT=... STRIPE_PORT=...` relies on) ----


def test_the_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=true\nSTRIPE_API_BASE=http://127.0.0.1:8420\n")

    found = settings_with(
        {"ENV_FILE": str(env_file), "STRIPE_API_BASE": "http://127.0.0.1:18421"}, "STRIPE_API_BASE", "DEBUG"
    )

    assert found == {"STRIPE_API_BASE": "http://127.0.0.1:18421", "DEBUG": True}


# --- The README's table -------------------------------------------------------------------

# Imports the settings with django-environ's view of the environment replaced by
# one that records every name asked for; prints them.
RECORD_READS = """
import json, os
import environ

class Recording(dict):
    asked = set()
    def __getitem__(self, key):
        Recording.asked.add(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        Recording.asked.add(key)
        return super().get(key, default)
    def __contains__(self, key):
        Recording.asked.add(key)
        return super().__contains__(key)

environ.Env.ENVIRON = Recording(os.environ)
import paymentsite.settings
print(json.dumps(sorted(Recording.asked)))
"""


def test_the_readme_lists_every_variable_the_settings_read():
    result = subprocess.run(
        [sys.executable, "-c", RECORD_READS],
        cwd=ROOT,
        env=clean_environment(PRODUCTION),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    read = set(json.loads(result.stdout.strip().splitlines()[-1]))

    assert {"CSRF_TRUSTED_ORIGINS", "SECURE_HSTS_SECONDS", "LOG_LEVEL", "BEHIND_PROXY"} <= read
    assert read - README_VARIABLES == set()
    # And the table names nothing the settings do not read.
    assert README_VARIABLES - read == set()
