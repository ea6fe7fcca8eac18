"""Browser origins allowed by CORS (`sentry.allowed_origins`, `posthog.allowed_origins`): parsed with their
YAML path, compared the way a browser sends them (`Origin: https://app.example.com`, no path)."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from agent.config.node import Node

ANY = "*"


def parse_origin(node: Node, where: str, text: str) -> str | None:
    """`https://app.example.com[:port]` (lower-cased) or `*`; None with an error at `where` otherwise."""
    if text == ANY:
        return text
    parts: SplitResult | None
    try:
        parts = urlsplit(text.strip())
        _ = parts.port                     # raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or \
            parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        node.error("must be an origin such as https://app.example.com (scheme, host, optional port; no path), "
                   "or \"*\"", where)
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_origins(node: Node, key: str = "allowed_origins") -> tuple[str, ...]:
    """The list at `key`, each origin checked (errors name `key[i]`), duplicates dropped."""
    origins = [o for i, text in enumerate(node.str_list(key)) if (o := parse_origin(node, f"{key}[{i}]", text))]
    return tuple(dict.fromkeys(origins))


def origin_allowed(allowed: tuple[str, ...], origin: str) -> bool:
    return ANY in allowed or origin.rstrip("/").lower() in allowed
