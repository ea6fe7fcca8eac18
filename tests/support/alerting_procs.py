"""Real processes and servers for the alerting tests: Debian's Alertmanager, a webhook receiver
that records what Alertmanager delivers, and an HTTP target that can be stopped and brought back.

Every server binds 127.0.0.1; Alertmanager gets a temp storage dir and is stopped by its PID.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import ROOT, free_port, http_get, terminate, wait_until

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"

SHIPPED_CONFIG = ROOT / "prometheus" / "alertmanager.yml"
TEMPLATES = ROOT / "prometheus" / "alertmanager"
# where the shipped config expects its secret files and templates in the container
SECRETS_DIR = "/etc/alertmanager/secrets"
TEMPLATES_DIR = "/etc/alertmanager/templates"
# the secret files Alertmanager reads itself: Slack's URL, and the two webhooks' bearer tokens
SLACK_SECRET = "SLACK_WEBHOOK_URL"
TOKENS = {"ALERT_EMAIL_WEBHOOK": "ALERT_EMAIL_WEBHOOK_TOKEN", "ALERT_WEBHOOK_URL": "ALERT_WEBHOOK_TOKEN"}
# the two webhook addresses as shipped (no secret in them: Alertmanager 0.25 webhooks have no url_file)
SHIPPED_ADDRESSES = {"ALERT_EMAIL_WEBHOOK": "https://email-webhook.invalid/alertmanager",
                     "ALERT_WEBHOOK_URL": "https://alert-webhook.invalid/alertmanager"}
TEST_TOKENS = {"ALERT_EMAIL_WEBHOOK": "email-token-0123456789", "ALERT_WEBHOOK_URL": "webhook-token-9876543210"}


def installed(binary: str) -> bool:
    return Path(binary).exists()


def render_shipped_config(tmp: Path, urls: dict[str, str], tokens: dict[str, str] | None = None) -> str:
    """The shipped alertmanager.yml pointed at a test: the secret files (Slack's URL, the webhooks' tokens)
    written under tmp/secrets, the container's /etc/alertmanager paths moved to tmp and the repository,
    and the two webhook addresses (`urls`, by the documentation's names) replacing the shipped ones.
    Nothing else changes: the shipped file runs as it is, without a render step."""
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    (secrets_dir / SLACK_SECRET).write_text(urls[SLACK_SECRET] + "\n")
    for name, file_name in TOKENS.items():
        (secrets_dir / file_name).write_text((tokens or TEST_TOKENS)[name] + "\n")
    text = SHIPPED_CONFIG.read_text()
    for name, shipped in SHIPPED_ADDRESSES.items():
        assert text.count(f"url: {shipped} ") == 1, f"{shipped} is not in the shipped config once"
        text = text.replace(f"url: {shipped} ", f"url: '{urls[name]}' ")
    return text.replace(SECRETS_DIR, str(secrets_dir)).replace(TEMPLATES_DIR, str(TEMPLATES))


def receiver_secrets(receiver_url: str) -> dict[str, str]:
    """URLs sending every integration to the test's receiver, one path per integration."""
    return {SLACK_SECRET: receiver_url + "/slack", "ALERT_EMAIL_WEBHOOK": receiver_url + "/email",
            "ALERT_WEBHOOK_URL": receiver_url + "/webhook"}


def with_short_timings(config_text: str, group_wait: str = "1s", group_interval: str = "1s",
                       repeat_interval: str = "1h", resolve_timeout: str = "5m") -> dict[str, Any]:
    """The config with every route's timings shortened for a test; routing and receivers unchanged."""
    config = yaml.safe_load(config_text)
    config.setdefault("global", {})["resolve_timeout"] = resolve_timeout
    pending = [config["route"]]
    while pending:
        route = pending.pop()
        is_root = route is config["route"]
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval),
                           ("repeat_interval", repeat_interval)):
            if is_root or key in route:
                route[key] = value
        pending.extend(route.get("routes", []))
    return config


class AlertmanagerProcess:
    """Debian's Alertmanager on a free 127.0.0.1 port, no clustering, storage in a temp dir."""

    def __init__(self, tmp: Path, config: dict[str, Any] | str):
        self.port = free_port()
        self.dir = tmp / "alertmanager"
        (self.dir / "data").mkdir(parents=True)
        self.config_path = self.dir / "alertmanager.yml"
        self.config_path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.dir / "alertmanager.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={self.config_path}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=debug"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        try:
            wait_until(self._ready, 20, what="alertmanager ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n{self.log()}")
        return http_get(self.url + "/-/ready", timeout=1)[0] == 200

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts the way Prometheus does (API v2); `alerts` are {"labels": ..., "annotations": ...}."""
        request = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200, resp.status

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with its status (active, suppressed; inhibitedBy)."""
        status, _, body = http_get(self.url + "/api/v2/alerts")
        assert status == 200, body
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


class WebhookReceiver:
    """Records every POST (path and JSON body) Alertmanager sends: webhook, Slack and e-mail
    webhook notifications alike, told apart by the path each receiver is configured with."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.authorizations: list[tuple[str, str | None]] = []     # (path, Authorization header) of each POST
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload: Any = json.loads(body)
                except ValueError:
                    payload = body.decode(errors="replace")
                with receiver._lock:
                    receiver.posts.append((self.path, payload))
                    receiver.authorizations.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def received(self, path: str | None = None) -> list[Any]:
        """The bodies posted so far (to `path` only, when given)."""
        with self._lock:
            return [body for p, body in self.posts if path is None or p == path]

    def alerts(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every Alertmanager webhook notification (`status` per alert), in order."""
        return [alert for body in self.received(path) if isinstance(body, dict)
                for alert in body.get("alerts", [])]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SwitchableTarget:
    """A healthy HTTP server on one 127.0.0.1 port that can be stopped (connections refused)
    and started again on the same port, as a probed service going down and coming back."""

    def __init__(self) -> None:
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self.start()
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        assert self._server is None, "already running"
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Healthy)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run amtool; the result keeps stdout and stderr for the assertion message."""
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def post_json(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
