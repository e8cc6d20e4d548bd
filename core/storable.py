"""What PostgreSQL can store of parsed JSON and of query strings, checked before anything is written."""

# Deeper than any body the API takes (its deepest is an object of strings inside
# an object); a deeper one is refused before it reaches code that recurses.
MAX_JSON_DEPTH = 32


def unstorable_text_problem(text: str) -> str | None:
    """Why one string cannot be stored as PostgreSQL text, or None."""
    if "\x00" in text:
        return "strings may not contain the NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "strings may not contain unpaired surrogates"
    return None


def unstorable_string_problem(value) -> str | None:
    """
    Why a string somewhere in `value` (parsed JSON: dicts, lists, strings...)
    cannot be stored, or None. A NUL character or a lone UTF-16 surrogate is
    valid JSON but no valid PostgreSQL text or JSONB value: refused up front, it
    is a 400; at the INSERT it would be a 500. Walks without recursion, so no
    nesting depth can exhaust the stack.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (problem := unstorable_text_problem(item)):
            return problem
    return None


def json_depth_exceeds(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests objects and arrays more than `limit` levels deep (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False
