"""The sign-in page (a form posting an admin token: never a token in a URL) and the pages that answer a
refusal (401 wrong token, 429 too many attempts, 403 a cross-site post or a stale form)."""

from __future__ import annotations

from agent.analytics_page.layout import esc, message, page


def render_sign_in(next_path: str, error: str | None = None, note: str | None = None) -> str:
    """The form; `next_path` (checked by the caller: a path under /analytics) is where signing in leads."""
    alert = message("error", error) if error else (message("note", note) if note else "")
    return page("Sign in · loom-agent analytics",
                '<form class="signin" method="post" action="/analytics/sign-in" autocomplete="off">'
                "<h2>Sign in</h2>"
                '<p class="meta">with an admin token of the agent (<code>api.admin_tokens</code> or '
                "<code>LOOM_AGENT_ADMIN_TOKENS</code>)</p>"
                f"{alert}"
                f'<input type="hidden" name="next" value="{esc(next_path)}">'
                '<label>Admin token<input name="token" type="password" autocomplete="current-password" required '
                "autofocus></label>"
                '<button class="primary">Sign in</button></form>')


def render_refusal(title: str, text: str) -> str:
    return page(f"{title} · loom-agent analytics",
                f'<div class="signin"><h2>{esc(title)}</h2>{message("error", text)}'
                '<p><a href="/analytics/sign-in">Sign in</a></p></div>')
