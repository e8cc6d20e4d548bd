"""
Text about failures that is safe to keep and show: no row data, no secrets.

PostgreSQL describes a failed constraint with the whole offending row ("DETAIL:
Failing row contains (…)", "Key (…)=(…) already exists"), and a payment's row
holds its `client_secret`; Stripe's objects carry `client_secret` too. Every
error kept on a row (a webhook event's `error`), written to a command's output
or a log line, and every Stripe payload shown to staff goes through here:

- `safe_error_text(exc)`: an exception as one line; a database error by its
  kind and the constraint, table or column it concerns, never its message.
- `scrub(text)`: text with PostgreSQL's DETAIL lines and anything shaped like a
  Stripe secret (client secrets, API keys, webhook secrets) taken out.
- `redact_secrets(value)`: parsed JSON with every `*secret*` key's value replaced.
- `SafeFormatter`: the logging formatter of the site's handlers (settings.LOGGING),
  which scrubs every formatted record, tracebacks included.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# The longest error text kept on a row.
MAX_ERROR_LENGTH = 500

# Stripe's secrets by shape: a PaymentIntent's or SetupIntent's client secret,
# secret and restricted API keys, webhook signing secrets.
_SECRET = re.compile(
    r"\b(?:[a-z]+_[A-Za-z0-9]+_secret_[A-Za-z0-9]+|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9]+)"
)
# PostgreSQL's lines that quote row data: DETAIL (the failing row, the duplicate key's value).
_ROW_DATA = re.compile(r"(DETAIL:|Failing row contains|Key \().*", re.DOTALL)


def scrub(text: str) -> str:
    """`text` with PostgreSQL's row data (DETAIL lines) and Stripe-shaped secrets taken out, line by line."""
    lines = []
    for line in str(text).splitlines():
        if _ROW_DATA.search(line):
            line = _ROW_DATA.sub("DETAIL: [row data removed]", line)
        lines.append(_SECRET.sub(REDACTED, line))
    return "\n".join(lines)


def _chain(exc: BaseException):
    """The exception and those it was raised from or during, once each."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def database_error_in(exc: BaseException) -> BaseException | None:
    """The database error `exc` is or was raised from (Django's or the driver's), or None."""
    from django.db import DatabaseError

    for link in _chain(exc):
        if isinstance(link, DatabaseError) or getattr(link, "diag", None) is not None:
            return link
    return None


def safe_error_text(exc: BaseException, *, limit: int = MAX_ERROR_LENGTH) -> str:
    """
    One line saying what `exc` was, safe to store, log and show: its class and
    the first line of its message, scrubbed; a database error (or one raised
    from it) by its class, the driver's error kind (e.g. CheckViolation) and the
    constraint, table or column it names (PostgreSQL's diagnostics), never the
    message, which may quote the row. At most `limit` characters.
    """
    database_error = database_error_in(exc)
    if database_error is not None:
        return _database_error_text(exc, database_error)[:limit]
    first_line = next(iter(str(exc).strip().splitlines()), "")
    return scrub(f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__)[:limit]


def _database_error_text(exc: BaseException, database_error: BaseException) -> str:
    driver_error = database_error.__cause__ if getattr(database_error, "diag", None) is None else database_error
    diag = getattr(driver_error, "diag", None)
    kind = type(driver_error).__name__ if driver_error is not None else type(database_error).__name__
    names = []
    for label, attribute in (("constraint", "constraint_name"), ("table", "table_name"), ("column", "column_name")):
        value = getattr(diag, attribute, None) if diag is not None else None
        if value:
            names.append(f"{label} {value}")
    concerned = f" ({', '.join(names)})" if names else ""
    outer = type(exc).__name__
    inner = type(database_error).__name__
    prefix = outer if outer == inner else f"{outer} from {inner}"
    return scrub(f"{prefix}: {kind}{concerned}")


def redact_secrets(value):
    """
    A copy of parsed JSON `value` (dicts, lists, strings…) in which the value of
    every key containing `secret` (any case: `client_secret`, `webhook_secret`…)
    is REDACTED, and every string shaped like a Stripe secret is scrubbed. Walks
    without recursion, so no nesting depth can exhaust the stack.
    """
    root = [value]
    pending = [(root, 0, value)]
    while pending:
        parent, key, item = pending.pop()
        if isinstance(item, dict):
            copy = {}
            parent[key] = copy
            for name, child in item.items():
                if isinstance(name, str) and "secret" in name.lower():
                    copy[name] = REDACTED
                else:
                    copy[name] = None
                    pending.append((copy, name, child))
        elif isinstance(item, list):
            copy = [None] * len(item)
            parent[key] = copy
            pending.extend((copy, index, child) for index, child in enumerate(item))
        elif isinstance(item, str):
            parent[key] = _SECRET.sub(REDACTED, item)
        else:
            parent[key] = item
    return root[0]


class SafeFormatter(logging.Formatter):
    """
    The site's log formatter (settings.LOGGING): formats as logging.Formatter
    does, then scrubs the whole text, message and traceback alike (`scrub`), so
    no log line carries a row PostgreSQL quoted or a Stripe secret, whoever
    logged it (our code, Django's 500s, the job workers).
    """

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
