"""Raw HTTP posts to an agent process, for tests that send bodies in exact wire forms."""

from __future__ import annotations

import http.client

from tests.support.procs import AgentProcess


def post_raw(agent: AgentProcess, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
