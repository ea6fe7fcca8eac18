"""blackbox_exporter's module file as it is (config/modules.py): its schema, modules_file, the built-ins,
and the tcp step semantics blackbox's example relies on (a newline after send, ${1} from the expect)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent.collectors.base import ProbeTarget
from agent.collectors.gosyntax import go_expand, go_regex
from agent.collectors.tcp import Collector as TcpCollector
from agent.config.load import parse_config
from agent.config.modules import BLACKBOX_EXAMPLE, builtin_modules
from agent.config.node import ConfigError
from tests.support.loopback import serve

ROOT = Path(__file__).resolve().parent.parent
FULL_EXAMPLE = Path(__file__).parent / "fixtures" / "blackbox_0.23_example.yml"
BLACKBOX_TEN = {"http_2xx", "http_post_2xx", "tcp_connect", "pop3s_banner", "grpc", "grpc_plain", "ssh_banner",
                "irc_banner", "icmp", "icmp_ttl5"}


def test_builtins_are_blackboxs_ten_then_the_agents_extras() -> None:
    modules = builtin_modules()
    assert set(modules) == BLACKBOX_TEN | {"tls_connect", "websocket_connect"}
    assert all(modules[name].blackbox for name in BLACKBOX_TEN)
    assert modules["http_post_2xx"].options.method == "POST"
    assert modules["icmp_ttl5"].timeout == 5.0
    assert modules["grpc"].options.ip.preferred == 4


def test_blackbox_0_23_full_example_only_refused_keys_fail() -> None:
    """blackbox's own example.yml (every key it documents): accepted but for what the agent refuses by name."""
    with pytest.raises(ConfigError) as info:
        parse_config(f"modules_file: {FULL_EXAMPLE}\n")
    prefix = f"modules_file ({FULL_EXAMPLE}): modules."
    assert sorted(e.removeprefix(prefix) for e in info.value.errors) == sorted([
        "http_with_proxy.http.proxy_url: not supported by loom-agent (blackbox_exporter key)",
        "http_with_proxy.http.skip_resolve_phase_with_proxy: not supported by loom-agent (blackbox_exporter key)",
        "http_custom_ca_example.http.tls_config.ca_file: file not found: /certs/my_cert.crt",
        "http_gzip.http.compression: not supported by loom-agent (blackbox_exporter key)",
        "http_gzip_with_accept_encoding.http.compression: not supported by loom-agent (blackbox_exporter key)"])


def test_blackbox_keys_map_to_the_agents_options(tmp_path: Path) -> None:
    config = parse_config("""
modules:
  http_2xx_example:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      headers: {Host: vhost.example.com}
      no_follow_redirects: true
      fail_if_header_not_matches: [{header: Access-Control-Allow-Origin, regexp: '(\\\\*|example\\\\.com)'}]
      tls_config: {insecure_skip_verify: true, min_version: TLS12}
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      body_size_limit: 1MB
  dns_tcp:
    prober: dns
    dns: {transport_protocol: tcp, query_name: www.prometheus.io, query_class: CH,
          validate_answer_rrs: {fail_if_none_matches_regexp: ["127.0.0.1"]}}
targets:
  - {name: a, module: http_2xx_example, url: "http://127.0.0.1:1/", tls_config: {insecure_skip_verify: false}}
""")
    http = config.modules["http_2xx_example"].options
    assert (http.follow_redirects, http.tls.verify, http.tls.min_version) == (False, False, "TLS 1.2")
    assert (http.ip.preferred, http.ip.fallback, http.body_size_limit) == (4, False, 1024 * 1024)
    assert http.fail_if_header_not_matches[0].header == "access-control-allow-origin"
    dns = config.modules["dns_tcp"].options
    assert (dns.transport, dns.query_type, dns.query_class) == ("tcp", "ANY", "CH")
    assert config.targets[0].options.tls.verify is True      # a target of a blackbox module writes blackbox's keys


def test_modules_file_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "bb.yml").write_text("modules:\n  mine: {prober: tcp, tcp: {tls: true}}\n")
    (tmp_path / "agent.yaml").write_text("modules_file: bb.yml\n")
    from agent.config.load import load_config
    config = load_config(str(tmp_path / "agent.yaml"), environ={})
    assert config.modules["mine"].options.tls is True and config.modules["mine"].blackbox


def test_go_syntax() -> None:
    assert go_regex("^+OK").search("OK here") and not go_regex("^+OK").search("+OK here")
    match = re.search("PING :([^ ]+)", "PING :abc")
    assert match is not None
    assert go_expand("PONG ${1} $1x $$ $", match) == "PONG abc  $ $"


def test_blackbox_tcp_steps_send_newlines_and_expand_the_match() -> None:
    """irc_banner as blackbox runs it: sends end in "\\n"; `expect` + `send` in one step echoes ${1}."""
    module = builtin_modules()["irc_banner"]
    received: list[bytes] = []

    async def irc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend([await reader.readline(), await reader.readline()])
        writer.write(b"PING :z9\r\n")
        received.append(await reader.readline())
        if received[-1] == b"PONG z9\n":
            writer.write(b":srv 001 prober :hi\r\n")
        await writer.drain()

    async def run() -> bool:
        async with serve(irc) as port:
            target = ProbeTarget("irc", "tcp", None, f"127.0.0.1:{port}", 15, 5, 0, {}, module.options)
            return (await TcpCollector().probe(target, time.monotonic() + 5)).success

    assert asyncio.run(run())
    assert received == [b"NICK prober\n", b"USER prober prober prober :prober\n", b"PONG z9\n"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_check_config_takes_blackbox_files_as_they_are() -> None:
    """The issue's first complaint: Debian's blackbox.yml made check-config exit 2; blackbox's full example
    exits 2 naming every key the agent refuses, and nothing else."""
    debian = Path("/etc/prometheus/blackbox.yml")
    ok = run_cli("check-config", str(debian if debian.exists() else BLACKBOX_EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "12 modules" in ok.stdout
    bad = run_cli("check-config", str(FULL_EXAMPLE))
    assert bad.returncode == 2
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5 and all("modules.http_" in e for e in errors), bad.stderr
    assert "modules.http_gzip.http.compression: not supported by loom-agent (blackbox_exporter key)" in bad.stderr


def test_probe_hostname_parameter_sets_the_host_header() -> None:
    """blackbox's /probe?hostname=: the Host header of an http probe; a module with another Host: 400."""
    from agent.api.probe import probe_target
    from agent.collectors.http import Collector as HttpCollector

    config = parse_config("modules:\n  vhost: {prober: http, http: {headers: {Host: a.example}}}\n")
    with pytest.raises(ValueError, match="host header defined both in module configuration"):
        probe_target(config, config.modules["vhost"], "http://127.0.0.1:1/", None, "b.example")
    heads: list[bytes] = []

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def run() -> bool:
        async with serve(http) as port:
            target = probe_target(config, config.modules["http_2xx"], f"http://127.0.0.1:{port}/", None,
                                  "vhost.example")
            tcp = probe_target(config, config.modules["tcp_connect"], f"127.0.0.1:{port}", None, "ignored")
            assert tcp.options == config.modules["tcp_connect"].options
            return (await HttpCollector().probe(target, time.monotonic() + 5)).success

    assert asyncio.run(run())
    assert b"\r\nHost: vhost.example\r\n" in heads[0]


def test_blackbox_authorization_block_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.collectors.http import Collector as HttpCollector

    monkeypatch.setenv("LOOM_TEST_CREDENTIALS", "s3cr3t-token")
    config = parse_config("""
modules:
  api: {prober: http, http: {authorization: {type: Token, credentials: "${LOOM_TEST_CREDENTIALS}"}}}
""")
    with pytest.raises(ConfigError, match="set only one of basic_auth, bearer_token or authorization"):
        parse_config("modules:\n  x: {prober: http, http: {bearer_token: a, authorization: {credentials: b}}}\n")
    heads: list[bytes] = []

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def run() -> bool:
        async with serve(http) as port:
            target = ProbeTarget("api", "http", f"http://127.0.0.1:{port}/", None, 15, 5, 0, {},
                                 config.modules["api"].options)
            return (await HttpCollector().probe(target, time.monotonic() + 5)).success

    assert asyncio.run(run())
    assert b"\r\nAuthorization: Token s3cr3t-token\r\n" in heads[0]


@pytest.mark.parametrize("validation,success", [
    ({"fail_if_all_match_regexp": ["192\\.0\\.2\\."]}, True),      # blackbox fails unless ALL match (sic)
    ({"fail_if_all_match_regexp": ["192\\.0\\.2\\.1$"]}, False),   # .2 does not match
    ({"fail_if_none_matches_regexp": ["192\\.0\\.2\\.2"]}, True),
    ({"fail_if_none_matches_regexp": ["198\\.51"]}, False),
    ({"fail_if_not_matches_regexp": ["192"]}, True),
])
def test_blackbox_dns_validation(validation: dict, success: bool) -> None:
    """validRRs of blackbox 0.23, on a two-record answer (192.0.2.1 and 192.0.2.2)."""
    from agent.collectors.dns import Collector as DnsCollector
    from tests.support.dns_server import DnsServer

    config = parse_config(yaml.safe_dump({"modules": {"d": {"prober": "dns", "dns": {
        "query_name": "two.test", "query_type": "A", "validate_answer_rrs": validation}}}}))

    async def run() -> bool:
        async with DnsServer({("two.test.", "A"): ["192.0.2.1", "192.0.2.2"]}) as server:
            target = ProbeTarget("d", "dns", None, server.address, 15, 5, 0, {}, config.modules["d"].options)
            return (await DnsCollector().probe(target, time.monotonic() + 5)).success

    assert asyncio.run(run()) is success


def test_blackbox_dns_empty_section_fails_a_required_match() -> None:
    """blackbox (unlike the agent's own form) fails fail_if_not_matches_regexp on an empty section."""
    from agent.collectors.dns import Collector as DnsCollector
    from tests.support.dns_server import DnsServer

    blackbox = parse_config(yaml.safe_dump({"modules": {"d": {"prober": "dns", "dns": {
        "query_name": "two.test", "query_type": "AAAA",
        "validate_answer_rrs": {"fail_if_not_matches_regexp": ["x"]}}}}})).modules["d"]
    flat = parse_config(yaml.safe_dump({"modules": {"d": {"kind": "dns", "query_name": "two.test", "query_type":
                                                          "AAAA", "validate_answer_rrs": {
                                                              "fail_if_not_matches_regexp": ["x"]}}}})).modules["d"]

    async def run(options: object) -> bool:
        async with DnsServer({("two.test.", "A"): ["192.0.2.1"]}) as server:     # AAAA: NOERROR, empty
            target = ProbeTarget("d", "dns", None, server.address, 15, 5, 0, {}, options)
            return (await DnsCollector().probe(target, time.monotonic() + 5)).success

    assert asyncio.run(run(blackbox.options)) is False
    assert asyncio.run(run(flat.options)) is True


def test_probe_debug_shows_a_blackbox_module_with_its_secrets_redacted() -> None:
    from tests.support.agent_app import agent_app, served

    config = """
modules:
  secret_api:
    prober: http
    http: {authorization: {type: Token, credentials: s3cr3t}, headers: {X-Api-Key: k3y}}
"""

    async def main() -> str:
        async with served(agent_app(None, config)) as agent:
            answer = await agent.fetch("GET", "/probe?target=http://127.0.0.1:1/&module=secret_api&debug=true")
            return answer.body
    body = asyncio.run(main())
    assert "Module configuration:\n  prober: http\n  http:\n    authorization: '<secret>'" in body
    assert "s3cr3t" not in body and "k3y" not in body and "probe_http_status_code 0.0" in body
