"""Real processes for tests: the agent itself, Prometheus, and a threaded loopback HTTP server.

Every process is started with a temporary directory, bound to 127.0.0.1, and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def terminate(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stop a process this test started, by its PID: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A port that was free a moment ago (for programs that cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def http_post(url: str, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def loopback_http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler] = _Handler) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:<port 0> (by default a healthy one answering 200 "ok"); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class AgentProcess:
    """`python -m agent run` on a config file in a temp dir."""

    def __init__(self, tmp: Path, config: dict, env: dict[str, str] | None = None):
        self.port = free_port()
        config = {"listen": f"127.0.0.1:{self.port}", **config}
        self.config_path = tmp / "agent.yaml"
        self.write_config(config)
        self.log_path = tmp / "agent.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--log-level", "debug", "run", "--config", str(self.config_path)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: self._ready(), 20, what=f"agent ready on {self.url}; log:\n{self.log()}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
        return http_get(self.url + "/-/ready", timeout=1)[0] == 200

    def write_config(self, config: dict) -> None:
        config.setdefault("listen", f"127.0.0.1:{self.port}")
        self.config_path.write_text(yaml.safe_dump(config))

    def metrics(self, accept: str | None = None) -> str:
        status, _, body = http_get(self.url + "/metrics", {"Accept": accept} if accept else None)
        assert status == 200
        return body.decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class PrometheusProcess:
    """A real Prometheus (Debian's package) with a temp data dir, scraping what it is told."""

    BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"

    def __init__(self, tmp: Path, scrape_configs: list[dict], rule_files: list[str] | None = None,
                 alertmanagers: list[str] | None = None, interval: str = "1s"):
        self.port = free_port()
        self.dir = tmp / "prometheus"
        (self.dir / "data").mkdir(parents=True)
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": scrape_configs}
        if rule_files:
            config["rule_files"] = rule_files
        if alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = self.dir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.BINARY, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._ready, 30, what="prometheus ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()}")
        return http_get(self.url + "/-/ready", timeout=1)[0] == 200

    def query(self, expr: str) -> list[dict]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", data
        return data["data"]["result"]

    def targets(self) -> list[dict]:
        return json.loads(http_get(self.url + "/api/v1/targets")[2])["data"]["activeTargets"]

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()

