"""The replay pages: `GET /replay` (the recordings of the last 7 days) and `GET /replay/{sessionId}` (one
recording, played by rrweb-player), for admins.

The pages hold no recording data: their script asks the admin API (`GET /api/recordings[/{id}]`) with
the admin token, which the page takes from its URL fragment (`/replay/<id>#token=<admin token>`: a
fragment is never sent to a server, so it is in no access log) or from a form, and keeps in the tab's
sessionStorage. Without the right token the API answers 401/403 and the page says so.

The player is rrweb-player from npm, installed by `npm ci --prefix agent/replay` (scripts/test.sh runs
it) and served from agent/replay/node_modules/rrweb-player/dist: never copied into the repository.
Without it the page says how to install it; the API works regardless.
"""

from __future__ import annotations

import html
from pathlib import Path

REPLAY_DIR = Path(__file__).resolve().parent.parent / "replay"
PLAYER_DIST = REPLAY_DIR / "node_modules" / "rrweb-player" / "dist"
# what the agent serves of the player's package: name under /replay/player/ -> (file, content type)
PLAYER_FILES = {
    "rrweb-player.js": ("rrweb-player.umd.min.cjs", "application/javascript"),
    "rrweb-player.css": ("style.min.css", "text/css"),
}
INSTALL_HINT = "npm ci --prefix agent/replay"


def player_file(name: str, dist: Path = PLAYER_DIST) -> tuple[Path, str] | None:
    """The file and content type served as /replay/player/{name}; None when unknown or not installed."""
    entry = PLAYER_FILES.get(name)
    if entry is None:
        return None
    path = dist / entry[0]
    return (path, entry[1]) if path.is_file() else None


def player_installed(dist: Path = PLAYER_DIST) -> bool:
    return all((dist / file).is_file() for file, _ in PLAYER_FILES.values())


_CSS = """body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;
color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px}header h1{font-size:18px;margin:0}header a{color:#9cc3ff}
main{padding:16px 20px}.note{background:#fff4d6;border:1px solid #e8c66a;padding:10px 14px;border-radius:6px}
.error{background:#fde2e1;border:1px solid #e08a86;padding:10px 14px;border-radius:6px}
table{border-collapse:collapse;background:#fff;width:100%}
td,th{padding:6px 10px;border-bottom:1px solid #e3e5ea;text-align:left}
code{background:#eceef2;padding:1px 4px;border-radius:3px}header code{background:#2f3747;color:#fff}
#meta{margin:8px 0 12px}form{margin:12px 0}
#player{display:inline-block}"""

_SCRIPT_COMMON = """
const KEY = 'loom-agent-admin-token';
function token() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) { sessionStorage.setItem(KEY, decodeURIComponent(m[1])); history.replaceState(null, '', location.pathname); }
  return sessionStorage.getItem(KEY);
}
function show(id, text, cls) {
  const el = document.getElementById(id); el.textContent = text; el.className = cls || ''; el.hidden = false;
}
function askToken(why) {
  const f = document.getElementById('login'); f.hidden = false;
  if (why) show('status', why, 'error');
  f.onsubmit = (e) => { e.preventDefault(); sessionStorage.setItem(KEY, f.elements.token.value); location.reload(); };
}
async function api(path) {
  const t = token();
  if (!t) { askToken(''); return null; }
  const r = await fetch(path, {headers: {Authorization: 'Bearer ' + t}, cache: 'no-store'});
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(KEY); askToken(body.error || ('HTTP ' + r.status)); return null;
  }
  if (!r.ok) { show('status', body.error || ('HTTP ' + r.status), 'error'); return null; }
  return body;
}
function iso(s) { return new Date(s * 1000).toISOString().replace('.000Z', 'Z'); }
"""

_PLAY_SCRIPT = """
(async () => {
  const sid = document.body.dataset.session;
  const params = new URLSearchParams(location.search);
  const win = params.get('windowId');
  const path = '/api/recordings/' + encodeURIComponent(sid);
  let rec = await api(path + (win ? '?windowId=' + encodeURIComponent(win) : ''));
  if (!rec) return;
  if (!win && rec.windows.length > 1 && rec.windows[0]) {     // one tab at a time: the first one recorded
    rec = await api(path + '?windowId=' + encodeURIComponent(rec.windows[0]));
    if (!rec) return;
  }
  document.getElementById('status').hidden = true;
  const others = rec.windows.filter((w) => w && w !== rec.windowId).map((w) =>
    '<a href="?windowId=' + encodeURIComponent(w) + '">' + w.replace(/[&<>"]/g, '') + '</a>').join(', ');
  show('meta', (rec.userId ? 'user ' + rec.userId + ' · ' : '') + iso(rec.start) + ' · ' +
       Math.round(rec.durationSeconds) + ' s · ' + rec.events.length + ' rrweb events' +
       (rec.windowId ? ' · window ' + rec.windowId : ''));
  if (others) {
    const p = document.createElement('p'); p.innerHTML = 'other windows: ' + others;
    document.getElementById('meta').after(p);
  }
  const Player = window.rrwebPlayer && (window.rrwebPlayer.default || window.rrwebPlayer);
  if (!Player) return;
  if (rec.events.length < 2) {
    show('status', 'This recording has fewer than two events: nothing to play.', 'note'); return;
  }
  window.loomReplay = new Player({target: document.getElementById('player'),
    props: {events: rec.events, width: Math.min(1024, innerWidth - 60),
            height: Math.max(300, Math.min(576, innerHeight - 280)), autoPlay: true,
            showController: true}});
  document.body.dataset.playing = 'true';
})();
"""

_LIST_SCRIPT = """
(async () => {
  const list = await api('/api/recordings?range=7d&limit=100');
  if (!list) return;
  document.getElementById('status').hidden = true;
  const rows = list.recordings.map((r) => {
    const tr = document.createElement('tr');
    const a = document.createElement('a');
    a.href = '/replay/' + encodeURIComponent(r.sessionId); a.textContent = r.sessionId;
    const cells = [a, r.userId || '', iso(r.start), Math.round(r.durationSeconds) + ' s', String(r.snapshots)];
    for (const c of cells) {
      const td = document.createElement('td');
      if (typeof c === 'string') td.textContent = c; else td.append(c);
      tr.append(td);
    }
    return tr;
  });
  document.getElementById('rows').append(...rows);
  if (!rows.length) show('status', 'No recordings in the last 7 days.', 'note');
})();
"""

_LOGIN = ('<form id="login" hidden><label>Admin token <input name="token" type="password" autocomplete="off" '
          'size="40"></label> <button>Open</button></form>')


def _head(title: str, with_player: bool) -> str:
    css = '<link rel="stylesheet" href="/replay/player/rrweb-player.css">' if with_player else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>{css}</head>")


def _missing_player() -> str:
    return ('<p class="note" id="no-player">The rrweb player is not installed. Install it from npm with '
            f"<code>{INSTALL_HINT}</code> in the agent's directory (scripts/test.sh does it), then reload. "
            "The recordings API works without it: <code>GET /api/recordings/{sessionId}</code> answers the "
            "rrweb events.</p>")


def render_replay(session_id: str, installed: bool) -> str:
    sid = html.escape(session_id, quote=True)
    player = ('<script src="/replay/player/rrweb-player.js"></script>' if installed else "")
    return "".join((
        _head(f"Replay {session_id} · loom-agent", installed),
        f'<body data-session="{sid}"><header><h1>Session recording <code>{sid}</code></h1>'
        '<a href="/replay">all recordings</a></header><main>',
        "" if installed else _missing_player(),
        _LOGIN, '<p id="status">Loading…</p><p id="meta" hidden></p><div id="player"></div></main>',
        player, "<script>", _SCRIPT_COMMON, _PLAY_SCRIPT, "</script></body></html>\n"))


def render_list() -> str:
    return "".join((
        _head("Session recordings · loom-agent", False),
        "<body><header><h1>Session recordings</h1></header><main>", _LOGIN,
        '<p id="status">Loading…</p><table><thead><tr><th>Session</th><th>User</th><th>Start</th><th>Duration</th>'
        '<th>Snapshots</th></tr></thead><tbody id="rows"></tbody></table></main>',
        "<script>", _SCRIPT_COMMON, _LIST_SCRIPT, "</script></body></html>\n"))
