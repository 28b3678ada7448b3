"""What herd treats as a secret, in one place: API keys come only from the environment, and nothing that may be one
(a key pasted where a variable's name goes, the password or query string of a URL) is written or echoed.

`key_env(value, where)` checks a `*.api_key_env` setting before the variable is read; `redact_urls(text)` takes
credentials and query values out of every http(s) URL in a text (`rundir.redact` applies it to manifests).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from herd.errors import UserError

REDACTED = "<redacted>"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "ghp_", "github_pat_", "AIza", "Bearer ")
_USERINFO = re.compile(r"(https?://)[^/@\s?#]+@")
_QUERY = re.compile(r"(https?://[^\s?#\"'<>]*\?)([^\s#\"'<>]*)")


def looks_like_key(value: str) -> bool:
    """Whether a value meant to be an environment variable's NAME looks like a key itself: not a valid variable
    name, a known key prefix, or long with lower-case letters and digits (variable names are short and upper-case)."""
    if not value:
        return False
    if not _ENV_NAME.match(value) or value.startswith(_KEY_PREFIXES):
        return True
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


def key_env(value: str, where: str) -> str:
    """`value` if it can be a variable's name; otherwise a UserError that says so without printing it."""
    if looks_like_key(value):
        raise UserError(
            f"{where}: the value looks like an API key itself (not shown), not the name of an environment variable; "
            f"put the key in a variable (export OPENAI_API_KEY=...) and set {where} = \"OPENAI_API_KEY\""
        )
    return value


def redact_urls(text: str) -> str:
    """`text` with the user:password part and every query value of each http(s) URL in it replaced."""
    text = _QUERY.sub(lambda m: m.group(1) + _redact_query(m.group(2)), text)
    return _USERINFO.sub(rf"\1{REDACTED}@", text)


def _redact_query(query: str) -> str:
    """'a=1&b=&token' -> 'a=<redacted>&b=&<redacted>': names stay (they say what was there), values go."""
    parts = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep:
            parts.append(f"{name}={REDACTED}" if value else part)
        else:
            parts.append(REDACTED if part else part)  # a bare ?KEY is a value without a name
    return "&".join(parts)


def url_secrets(url: str, shortest: int = 8) -> list[str]:
    """The password and query values of a URL that are long enough to be secrets, for scrubbing them from texts
    that quote them outside the URL (a server that echoes the key it rejected)."""
    parts = urlsplit(url)
    found = [parts.password or ""] + [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [name for name, value in parse_qsl(parts.query, keep_blank_values=True) if not value]
    return [s for s in found if len(s) >= shortest]
