"""What PostgreSQL can store of parsed JSON, checked before anything is written."""


def unstorable_string_problem(value) -> str | None:
    """
    Why a string somewhere in `value` (parsed JSON: dicts, lists, strings...)
    cannot be stored, or None. A NUL character or a lone UTF-16 surrogate is
    valid JSON but no valid PostgreSQL text or JSONB value: refused up front, it
    is a 400; at the INSERT it would be a 500.
    """
    if isinstance(value, dict):
        return next(
            (p for k, v in value.items() if (p := unstorable_string_problem(k) or unstorable_string_problem(v))),
            None,
        )
    if isinstance(value, list):
        return next((p for item in value if (p := unstorable_string_problem(item))), None)
    if isinstance(value, str):
        if "\x00" in value:
            return "strings may not contain the NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "strings may not contain unpaired surrogates"
    return None
