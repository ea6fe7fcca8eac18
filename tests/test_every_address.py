"""all_addresses (issue 16 item 5): every address of a host probed, per-address probe_success{ip}, the
target's success as all or any. Real probes to real loopback servers; only the name is made up: the system
resolver (ipproto.getaddrinfo, the one place probes ask it) answers `multi.test` with 127.0.0.1 and
127.0.0.2, where a server listens on the first only (no system file is edited to get a name with two
addresses)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from agent.collectors import every_address, ipproto, tcp
from agent.collectors.base import ProbeResult, ProbeTarget, Reason
from agent.collectors.icmp import open_socket
from agent.collectors.kinds import KINDS
from agent.collectors.scheduler import probe_once
from agent.config.load import parse_config
from agent.config.node import ConfigError
from agent.metrics.probe import result_gauges
from tests.support.agent_app import agent_app, served
from tests.support.collector_config import parse_kind
from tests.support.loopback import serve

NAME = "multi.test"
UP, DOWN = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Made-up names -> addresses for the probes' resolver; other names resolve as usual."""
    table: dict[str, list[str]] = {NAME: [UP, DOWN]}
    real = ipproto.getaddrinfo

    async def fake(host: str, port: int, family: int, socktype: int) -> list[Any]:
        if host not in table:
            return await real(host, port, family, socktype)
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socktype, 6, "", (ip, port))
                for ip in table[host] if family in (socket.AF_UNSPEC, socket.AF_INET6 if ":" in ip else socket.AF_INET)]

    monkeypatch.setattr(ipproto, "getaddrinfo", fake)
    yield table


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


def target(kind: str, mapping: dict[str, Any], *, address: str | None = None, url: str | None = None,
           timeout: float = 3.0) -> ProbeTarget:
    options, errors = parse_kind(SimpleNamespace(parse_options=KINDS[kind].parse_options), mapping)  # type: ignore[arg-type]
    assert errors == []
    return ProbeTarget(name="t", kind=kind, url=url, address=address, interval=15.0, timeout=timeout, retries=0,
                       labels={}, options=options)


async def probe(t: ProbeTarget) -> ProbeResult:
    return await probe_once(KINDS[t.kind].collector_factory(), t, t.timeout)


def per_ip(result: ProbeResult, kind: str = "tcp") -> dict[str, float]:
    return {labels["ip"]: value for name, labels, value in result_gauges(kind, result)
            if name == "probe_success" and "ip" in labels}


def success(result: ProbeResult, kind: str = "tcp") -> float:
    return next(value for name, labels, value in result_gauges(kind, result) if name == "probe_success" and not labels)


# ---------------------------------------------------------------- the collectors


def test_all_fails_when_one_address_is_down(names: dict[str, list[str]]) -> None:
    async def main() -> ProbeResult:
        async with serve(accept) as port:
            return await probe(target("tcp", {"all_addresses": True}, address=f"{NAME}:{port}"))
    result = asyncio.run(main())
    assert (result.success, result.reason) == (False, Reason.CONNECT)
    assert result.detail.startswith(f"{DOWN}: connect {DOWN}:") and result.detail.endswith("(1 of 2 addresses failed)")
    assert result.addresses == ((UP, True), (DOWN, False))
    assert (success(result), per_ip(result)) == (0.0, {UP: 1.0, DOWN: 0.0})
    assert result.ip_address == DOWN                         # the gauges are the failed address's
    assert any(line.startswith(f"[{UP}]") for line in result.log)


def test_any_succeeds_when_one_address_is_up(names: dict[str, list[str]]) -> None:
    async def main() -> ProbeResult:
        async with serve(accept) as port:
            return await probe(target("tcp", {"all_addresses": True, "all_addresses_success": "any"},
                                      address=f"{NAME}:{port}"))
    result = asyncio.run(main())
    assert (result.success, result.reason, result.detail) == (True, None, "")
    assert (success(result), per_ip(result)) == (1.0, {UP: 1.0, DOWN: 0.0})
    assert result.ip_address == UP


def test_all_succeeds_when_every_address_is_up(names: dict[str, list[str]]) -> None:
    names[NAME] = [UP, "127.0.0.3"]

    async def main() -> ProbeResult:
        async with serve(accept, host="0.0.0.0") as port:
            return await probe(target("tcp", {"all_addresses": True}, address=f"{NAME}:{port}"))
    result = asyncio.run(main())
    assert result.success is True, result.detail
    assert per_ip(result) == {UP: 1.0, "127.0.0.3": 1.0}


def test_without_all_addresses_one_address_is_probed(names: dict[str, list[str]]) -> None:
    async def main() -> ProbeResult:
        async with serve(accept) as port:
            return await probe(target("tcp", {}, address=f"{NAME}:{port}"))
    result = asyncio.run(main())
    assert (result.success, result.addresses, per_ip(result)) == (True, (), {})


def test_http_keeps_the_host_name_in_the_request(names: dict[str, list[str]]) -> None:
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.host)
        return web.Response(text="ok")

    async def main() -> ProbeResult:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, UP, 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await probe(target("http", {"all_addresses": True, "all_addresses_success": "any"},
                                      url=f"http://{NAME}:{port}/"))
        finally:
            await runner.cleanup()
    result = asyncio.run(main())
    assert result.success is True, result.detail
    assert per_ip(result, "http") == {UP: 1.0, DOWN: 0.0}
    assert hosts == [f"{NAME}:{hosts[0].rsplit(':', 1)[1]}"]         # one request, to the name, at 127.0.0.1


def test_addresses_are_capped(names: dict[str, list[str]]) -> None:
    names[NAME] = [f"127.0.0.{n}" for n in range(1, 21)]

    async def main() -> ProbeResult:
        async with serve(accept, host="0.0.0.0") as port:
            return await probe(target("tcp", {"all_addresses": True}, address=f"{NAME}:{port}"))
    result = asyncio.run(main())
    assert len(result.addresses) == every_address.MAX_ADDRESSES
    assert [ip for ip, _ in result.addresses] == names[NAME][:every_address.MAX_ADDRESSES]
    assert any("has 20 addresses; probing the first 16" in line for line in result.log)


def test_ip_protocol_fallback_false_keeps_one_family(names: dict[str, list[str]]) -> None:
    names[NAME] = [UP, "::1"]

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with serve(accept) as port:
            both = await probe(target("tcp", {"all_addresses": True, "all_addresses_success": "any"},
                                      address=f"{NAME}:{port}"))
            v4 = await probe(target("tcp", {"all_addresses": True, "preferred_ip_protocol": "ip4",
                                            "ip_protocol_fallback": False}, address=f"{NAME}:{port}"))
            return both, v4
    both, v4 = asyncio.run(main())
    assert [ip for ip, _ in both.addresses] == [UP, "::1"]
    assert (v4.success, v4.addresses) == (True, ((UP, True),))


def test_unresolvable_name_is_a_resolve_failure(names: dict[str, list[str]]) -> None:
    result = asyncio.run(probe(target("tcp", {"all_addresses": True}, address="no-such-host.invalid:80")))
    assert (result.success, result.reason, result.addresses) == (False, Reason.RESOLVE, ())


def test_icmp_to_every_address(names: dict[str, list[str]]) -> None:
    try:
        open_socket(4, None).close()
    except Exception:
        pytest.skip("no ICMP socket allowed here")
    result = asyncio.run(probe(target("icmp", {"all_addresses": True}, address=NAME)))
    assert (result.success, per_ip(result, "icmp")) == (True, {UP: 1.0, DOWN: 1.0}), result.detail


# ---------------------------------------------------------------- the agent: scheduled targets and /probe


@asynccontextmanager
async def agent(config: dict[str, Any]) -> AsyncIterator[Any]:
    async with served(agent_app(None, config)) as running:
        yield running


def test_scheduled_target_and_probe_endpoint(names: dict[str, list[str]]) -> None:
    async def main() -> tuple[str, str, str]:
        async with serve(accept) as port:
            config = {
                "modules": {"every": {"kind": "tcp", "all_addresses": True}},
                "targets": [{"name": "svc", "kind": "tcp", "address": f"{NAME}:{port}", "interval": "1s",
                             "timeout": "500ms", "all_addresses": True, "all_addresses_success": "any"}],
            }
            async with agent(config) as running:
                deadline = time.monotonic() + 10
                while True:
                    metrics = (await running.fetch("GET", "/metrics")).body
                    if 'probe_success{target="svc"' in metrics or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                every = (await running.fetch("GET", f"/probe?target={NAME}:{port}&module=every")).body
                plain = (await running.fetch("GET", f"/probe?target={NAME}:{port}&module=tcp_connect")).body
                return metrics, every, plain
    metrics, every, plain = asyncio.run(main())
    assert 'probe_success{target="svc"} 1.0' in metrics
    assert f'probe_success{{target="svc",ip="{UP}"}} 1.0' in metrics
    assert f'probe_success{{target="svc",ip="{DOWN}"}} 0.0' in metrics
    assert "probe_success 0.0" in every                        # all (the default): one address is down
    assert f'probe_success{{ip="{UP}"}} 1.0' in every and f'probe_success{{ip="{DOWN}"}} 0.0' in every
    assert "probe_success 1.0" in plain and 'ip="' not in plain


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("mapping, message", [
    ({"all_addresses": "yes"}, "targets[0].all_addresses: must be true or false"),
    ({"all_addresses": True, "all_addresses_success": "most"}, "targets[0].all_addresses_success: must be one of"),
    ({"all_addresses_success": "any"}, "targets[0].all_addresses_success: needs all_addresses: true"),
])
def test_config_errors_name_the_key(mapping: dict[str, Any], message: str) -> None:
    _, errors = parse_kind(tcp, mapping)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_ip_is_a_reserved_label() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("targets:\n  - {name: a, kind: tcp, address: '127.0.0.1:1', labels: {ip: x}}\n")
    assert info.value.errors == ["targets[0].labels.ip: is set by the agent itself; choose another label name"]


def test_blackbox_module_block_takes_it() -> None:
    config = parse_config("modules:\n  every:\n    prober: tcp\n    tcp: {all_addresses: true}\n")
    assert config.modules["every"].options.ip.all_addresses is True
