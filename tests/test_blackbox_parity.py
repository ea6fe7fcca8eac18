"""Series parity with blackbox_exporter (issue 16 items 3 and 6): Debian's blackbox_exporter 0.23 and the
agent, both as processes, probe the same loopback targets with every module of blackbox's example file
(Debian's /etc/prometheus/blackbox.yml, which the agent ships as its built-ins), and their `/probe` answers
are diffed: the same series (names and labels) and, but for timings, the same values. The agent's own
scheduled targets (a module and an endpoint in its config) are diffed the same way from /metrics.

Timings differ run to run and are compared by name and labels only: TIMINGS below. The agent emits no
series blackbox does not for these modules. Four dns modules and three http ones (a redirect followed,
with body and header checks, one not followed, a body regexp that fails over https) are added to the copy
both read (the agent through `modules_file:`), the dns ones against a loopback DNS server: there the
agent's one extra series is
`probe_failed_due_to_regex` (EXTRAS, docs/blackbox.md). The CA of the TLS servers reaches both through
SSL_CERT_FILE (Go's and OpenSSL's trust store override; GRPC_DEFAULT_SSL_ROOTS_FILE_PATH for grpcio's), so
the modules run unchanged.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import AsyncExitStack
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.config.modules import BLACKBOX_EXAMPLE
from tests.support.certs import make_ca, make_cert
from tests.support.dns_server import DnsServer
from tests.support.grpc_health import health_server
from tests.support.loopback import serve
from tests.support.procs import AgentProcess, free_port, http_get, terminate, wait_until

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
DEBIAN_EXAMPLE = Path("/etc/prometheus/blackbox.yml")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(BLACKBOX).exists(), reason="prometheus-blackbox-exporter not installed "
                                 "(scripts/test.sh installs it)")]

# series whose value is a time measured by the probe: compared by name and labels, not value
TIMINGS = frozenset({"probe_duration_seconds", "probe_dns_lookup_time_seconds", "probe_http_duration_seconds",
                     "probe_grpc_duration_seconds", "probe_icmp_duration_seconds", "probe_dns_duration_seconds"})
# series the agent adds beyond blackbox's, by prober: none for the example file's modules
EXTRAS: dict[str, frozenset[str]] = {"dns": frozenset({"probe_failed_due_to_regex"})}
SERIAL = 2024120401
EXTRA_MODULES = {
    "dns_a": {"prober": "dns", "dns": {"query_name": "example.test", "query_type": "A",
                                       "validate_answer_rrs": {"fail_if_not_matches_regexp": ["192\\.0\\.2\\.1"]}}},
    "dns_tcp_soa": {"prober": "dns", "dns": {"query_name": "example.test", "query_type": "SOA",
                                             "transport_protocol": "tcp", "preferred_ip_protocol": "ip4"}},
    "dns_nxdomain": {"prober": "dns", "dns": {"query_name": "missing.test", "query_type": "A"}},
    "http_no_redirects": {"prober": "http", "http": {"follow_redirects": False, "valid_status_codes": [302]}},
    "http_redirects": {"prober": "http", "http": {"fail_if_body_not_matches_regexp": ["parity test"],
                                                  "fail_if_header_matches": [{"header": "Set-Cookie", "regexp": ".*",
                                                                              "allow_missing": True}]}},
    "http_body_fails": {"prober": "http", "http": {"fail_if_body_matches_regexp": ["hello"]}},
    "dns_regex_fails": {"prober": "dns", "dns": {"query_name": "example.test", "query_type": "A",
                                                 "validate_answer_rrs": {"fail_if_matches_regexp": ["192"]}}},
}
LAST_MODIFIED = 1_700_000_000
SCRAPE_TIMEOUT = "5"                     # both take 0.5 s off: 4.5 s per probe (icmp_ttl5: its own 5 s)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Targets:
    """The loopback servers, on an event loop of their own (the test itself is synchronous)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cert = make_cert(tmp / "certs", ca=make_ca(tmp))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = AsyncExitStack()
        self.ports: dict[str, int] = {}
        self.irc_pong: list[str] = []

    def __enter__(self) -> Targets:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _start(self) -> None:
        enter = self.stack.enter_async_context
        self.ports["http"] = await self._http()
        self.ports["ssh"] = await enter(serve(_ssh))
        self.ports["irc"] = await enter(serve(self._irc))
        self.ports["pop3s"] = await enter(serve(_pop3, ssl_context=self.cert.server_context()))
        self.ports["grpc_tls"] = (await enter(health_server(self.cert, {"": "SERVING"}))).port
        self.ports["grpc_plain"] = (await enter(health_server(None, {"service1": "NOT_SERVING"}))).port
        records = {("example.test.", "A"): ["192.0.2.1"],
                   ("example.test.", "SOA"): [f"ns.example.test. admin.example.test. {SERIAL} 3600 600 86400 300"]}
        dns_server = await enter(DnsServer(records, authority=[("example.test.", "NS", "ns.example.test.")]))
        self.ports["dns"] = int(dns_server.address.rsplit(":", 1)[1])

    async def _http(self) -> int:
        async def page(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text="hello from the parity test\n",
                                headers={"Last-Modified": formatdate(LAST_MODIFIED, usegmt=True)})

        app = web.Application()
        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/")

        app.router.add_route("*", "/", page)
        app.router.add_route("*", "/moved", moved)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.cert.server_context()).start()
        self.stack.push_async_callback(runner.cleanup)
        self.ports["https"] = runner.addresses[1][1]
        return runner.addresses[0][1]

    async def _irc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """NICK and USER, then a PING whose token the prober must echo (its ${1}), then 001 only if it did."""
        nick, user = await reader.readline(), await reader.readline()
        if not (nick.startswith(b"NICK ") and user.startswith(b"USER ")):
            return
        writer.write(b":irc.test NOTICE * :*** Looking up your hostname\r\nPING :tok3n42\r\n")
        pong = (await reader.readline()).decode().strip()
        self.irc_pong.append(pong)
        if pong == "PONG tok3n42":
            writer.write(b":irc.test 001 prober :Welcome to the test network\r\n")
            await writer.drain()
            await reader.read()


async def _ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    await writer.drain()
    await reader.readline()


async def _pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # blackbox's `^+OK` is RE2's (?:^)+OK: "OK" at the start of a line; a real POP3 server's "+OK" fails it
    writer.write(b"+OK POP3 ready\r\nOK second line for the regexp\r\n")
    await writer.drain()
    await reader.read()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Targets]]:
    tmp = tmp_path_factory.mktemp("parity")
    with Targets(tmp) as targets:
        config = tmp / "blackbox.yml"
        modules = yaml.safe_load(DEBIAN_EXAMPLE.read_text())["modules"]
        config.write_text(yaml.safe_dump({"modules": {**modules, **EXTRA_MODULES}}))
        port = free_port()
        env = {"SSL_CERT_FILE": str(targets.cert.ca), "PATH": "/usr/bin:/bin"}
        log = open(tmp / "blackbox.log", "wb")
        blackbox = subprocess.Popen([BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
        agent = None
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_get(url + "/-/healthy", timeout=1)[0] == 200, 20, what="blackbox_exporter up")
            agent = AgentProcess(tmp, {"store": {"path": str(tmp / "events.db")}, "modules_file": str(config),
                                       "targets": scheduled_targets(targets)},
                                 env={"SSL_CERT_FILE": str(targets.cert.ca),
                                      "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(targets.cert.ca)})
            yield url, agent.url, targets
        finally:
            if agent is not None:
                agent.stop()
            terminate(blackbox)
            log.close()


# scheduled targets of the agent (modules of the file, the same endpoints): their last result on /metrics
SCHEDULED = ("http_2xx", "pop3s_banner", "ssh_banner", "irc_banner", "grpc", "icmp", "dns_tcp_soa")


def scheduled_endpoint(targets: Targets, module: str) -> str:
    p = targets.ports
    return {"http_2xx": f"http://127.0.0.1:{p['http']}/", "pop3s_banner": f"127.0.0.1:{p['pop3s']}",
            "ssh_banner": f"127.0.0.1:{p['ssh']}", "irc_banner": f"127.0.0.1:{p['irc']}",
            "grpc": f"127.0.0.1:{p['grpc_tls']}", "icmp": "127.0.0.1", "dns_tcp_soa": f"127.0.0.1:{p['dns']}"}[module]


def scheduled_targets(targets: Targets) -> list[dict[str, Any]]:
    out = []
    for module in SCHEDULED:
        endpoint = scheduled_endpoint(targets, module)
        where = {"url": endpoint} if endpoint.startswith("http") else {"address": endpoint}
        out.append({"name": f"t-{module}", "module": module, "interval": "2s", "timeout": "1500ms", **where})
    return out


def probe(base: str, module: str, target: str) -> Samples:
    query = urllib.parse.urlencode({"module": module, "target": target})
    status, _, body = http_get(f"{base}/probe?{query}", {"X-Prometheus-Scrape-Timeout-Seconds": SCRAPE_TIMEOUT},
                               timeout=15)
    assert status == 200, (module, status, body[:300])
    return parse(body.decode())


def module_targets(targets: Targets) -> dict[str, list[str]]:
    """Every module of the example file with the targets it probes: one that answers and one that fails."""
    p, refused = targets.ports, f"127.0.0.1:{free_port()}"
    return {
        "http_2xx": [f"http://127.0.0.1:{p['http']}/", f"http://{refused}/", f"https://127.0.0.1:{p['https']}/"],
        "http_post_2xx": [f"http://127.0.0.1:{p['http']}/", f"http://{refused}/"],
        "tcp_connect": [f"127.0.0.1:{p['ssh']}", refused],
        "pop3s_banner": [f"127.0.0.1:{p['pop3s']}", refused],
        "grpc": [f"127.0.0.1:{p['grpc_tls']}", refused],
        "grpc_plain": [f"127.0.0.1:{p['grpc_plain']}", refused],
        "ssh_banner": [f"127.0.0.1:{p['ssh']}", refused],
        "irc_banner": [f"127.0.0.1:{p['irc']}", refused],
        "icmp": ["127.0.0.1"],
        "icmp_ttl5": ["127.0.0.1"],
        **{name: [f"127.0.0.1:{p['dns']}", refused] for name in EXTRA_MODULES if name.startswith("dns")},
        "http_no_redirects": [f"http://127.0.0.1:{p['http']}/moved", f"http://{refused}/"],
        "http_redirects": [f"http://127.0.0.1:{p['http']}/moved", f"http://{refused}/"],
        "http_body_fails": [f"https://127.0.0.1:{p['https']}/", f"http://{refused}/"],
    }


def diff(ours: Samples, theirs: Samples, extras: frozenset[str] = frozenset()) -> list[str]:
    problems = []
    for key in sorted(set(theirs) - set(ours)):
        problems.append(f"missing {key[0]}{dict(key[1])} (blackbox: {theirs[key]})")
    for key in sorted(set(ours) - set(theirs)):
        if key[0] not in extras:
            problems.append(f"extra {key[0]}{dict(key[1])} = {ours[key]}")
    for key in sorted(set(ours) & set(theirs)):
        if key[0] not in TIMINGS and ours[key] != theirs[key]:
            problems.append(f"{key[0]}{dict(key[1])}: agent {ours[key]!r}, blackbox {theirs[key]!r}")
    return problems


def test_the_shipped_builtins_are_debians_example_file() -> None:
    assert BLACKBOX_EXAMPLE.read_bytes() == DEBIAN_EXAMPLE.read_bytes()


def test_every_module_of_the_example_file_emits_blackboxs_series(setup: tuple[str, str, Targets]) -> None:
    blackbox, agent, targets = setup
    problems, successes, seen = [], {}, {}
    plan = module_targets(targets)
    for module, addresses in plan.items():
        for target in addresses:
            theirs, ours = probe(blackbox, module, target), probe(agent, module, target)
            prober = EXTRA_MODULES.get(module, {}).get("prober", "")
            problems += [f"{module} {target}: {p}" for p in diff(ours, theirs, EXTRAS.get(prober, frozenset()))]
            successes[(module, target)] = theirs[("probe_success", frozenset())]
            seen[(module, target)] = ours
    assert not problems, "\n".join(problems)
    # the targets exercise both outcomes: each module's live target succeeds (but grpc_plain's NOT_SERVING
    # service; pop3s_banner's `^+OK` matches the server's second line, "OK ...", not its "+OK"), every
    # refused one fails
    live = {module: addresses[0] for module, addresses in plan.items()}
    assert {m for m, t in live.items() if successes[(m, t)] == 1} == {
        "http_2xx", "http_post_2xx", "tcp_connect", "pop3s_banner", "grpc", "ssh_banner", "irc_banner", "icmp",
        "icmp_ttl5", "dns_a", "dns_tcp_soa", "http_no_redirects", "http_redirects"}
    assert all(successes[(m, a)] == 0 for m, addresses in plan.items() for a in addresses[1:2])
    https = seen[("http_2xx", plan["http_2xx"][2])]
    assert https[("probe_http_ssl", frozenset())] == 1 and successes[("http_2xx", plan["http_2xx"][2])] == 1
    assert seen[("http_body_fails", live["http_body_fails"])][("probe_failed_due_to_regex", frozenset())] == 1
    assert "PONG tok3n42" in targets.irc_pong          # blackbox and the agent both echoed the ${1} group
    assert seen[("dns_tcp_soa", live["dns_tcp_soa"])][("probe_dns_serial", frozenset())] == SERIAL
    assert seen[("http_2xx", live["http_2xx"])][("probe_http_last_modified_timestamp_seconds", frozenset())] \
        == LAST_MODIFIED


def test_scheduled_targets_carry_the_same_series(setup: tuple[str, str, Targets]) -> None:
    """The agent's own targets (module + endpoint in its config): their probe_* series on /metrics, less the
    `target` label, are what blackbox's /probe answers for the same module and endpoint."""
    blackbox, agent, targets = setup

    def scheduled() -> dict[str, Samples]:
        status, _, body = http_get(agent + "/metrics")
        assert status == 200
        out: dict[str, Samples] = {}
        for (name, labels), value in parse(body.decode()).items():
            as_dict = dict(labels)
            if name.startswith("probe_") and as_dict.get("target", "").startswith("t-"):
                target = as_dict.pop("target")
                out.setdefault(target.removeprefix("t-"), {})[(name, frozenset(as_dict.items()))] = value
        return out

    wait_until(lambda: set(scheduled()) == set(SCHEDULED), 20, what="every scheduled target probed once")
    ours = scheduled()
    problems = []
    for module in SCHEDULED:
        extras = EXTRAS.get(EXTRA_MODULES.get(module, {}).get("prober", ""), frozenset())
        theirs = probe(blackbox, module, scheduled_endpoint(targets, module))
        problems += [f"{module}: {p}" for p in diff(ours[module], theirs, extras)]
    assert not problems, "\n".join(problems)
    assert all(ours[m][("probe_success", frozenset())] == 1 for m in SCHEDULED)
