"""The feature-flag benchmark's definitions, bodies and side processes (bench/flags.py starts them, pinned):

    python bench/flags_load.py ceiling
        core 0: the bare JSON endpoint, an aiohttp app on uvloop that reads the body, orjson.loads it and
        answers a canned /flags?v=2 answer of the same 50 flags (what any server must do at least). Prints
        "PORT n".
    python bench/flags_load.py load --url URL --start-at UNIX --warmup S --window S --connections N --base T
                                    [--rate R] [--complete]
        core 1: the load generator; prints one JSON object when done. Without --rate: bench/ingest_load.py's
        closed loop (N keep-alive connections, each sending its next request as soon as the last is
        answered). With --rate: an open loop, one request every 1/R seconds at its slot on an idle keep-alive
        connection (a new one when none is idle), its latency measured from the slot (so a server that falls
        behind is charged for the wait, no coordinated omission).

Every request is what posthog-js 1.449 sends to `POST /flags/?v=2&config=true` (its body as JSON text/plain:
token, distinct_id, groups, person_properties of ~10 keys, group_properties, timezone, $anon_distinct_id),
a distinct id of 20,000, properties varied per person. A request counts when it is answered 200 inside
[start-at + warmup, start-at + warmup + window].
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.ingest_load import run_role  # noqa: E402

KEY = "phc_bench0123456789abcdefghijklmnop"
PERSONAL_KEY = "phx_bench-personal-0123456789abcdef"
PATH = "/flags/?v=2&config=true"
ORIGIN = "https://app.example.com"
PEOPLE = 20_000
PLANS = ("free", "pro", "team", "enterprise")
COUNTRIES = ("DE", "FR", "US", "GB", "fr", "BR", "JP", "IN")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge", "Mobile Safari")
NAMES = ("Alex", "Mia", "Zed", "Noah", "Emma", "Liam", "Olivia", "Sam", "Yara", "Ben")
DOMAINS = ("loom.example", "acme.example", "gmail.example", "corp.example")


def definitions() -> list[dict[str, Any]]:
    """50 flags of the shapes a product runs: 15 boolean rollouts, 15 property-filter flags over every
    operator (exact lists, is_not, icontains, not_icontains, regex, not_regex, gt/gte/lt/lte, is_set,
    is_not_set, absolute and relative dates), 10 multivariate with payloads (some with a forced variant),
    5 group flags, 3 of several conditions, 2 switched off."""
    flags: list[dict[str, Any]] = []
    for i in range(15):
        flag: dict[str, Any] = {"key": f"rollout-{i}", "description": f"Boolean rollout {i}",
                                "conditions": [{"rollout_percentage": 5 + i * 6.5}]}
        if i % 3 == 0:
            flag["payloads"] = {"true": {"banner": f"rollout-{i}", "ttl": i * 10}}
        flags.append(flag)
    filters = [
        [{"key": "plan", "operator": "exact", "value": ["pro", "team"]}],
        [{"key": "country", "operator": "is_not", "value": ["FR", "BR"]}],
        [{"key": "email", "operator": "icontains", "value": "@loom.example"}],
        [{"key": "email", "operator": "not_icontains", "value": "gmail"}],
        [{"key": "name", "operator": "regex", "value": "^[A-M][a-z]+$"}],
        [{"key": "browser", "operator": "not_regex", "value": "(?i)safari"}],
        [{"key": "age", "operator": "gt", "value": 30}, {"key": "age", "operator": "lte", "value": 60}],
        [{"key": "company_size", "operator": "gte", "value": 50}],
        [{"key": "app_version", "operator": "lt", "value": 3}],
        [{"key": "is_beta", "operator": "is_set"}],
        [{"key": "legacy_id", "operator": "is_not_set"}],
        [{"key": "signed_up", "operator": "is_date_after", "value": "2025-06-01"}],
        [{"key": "signed_up", "operator": "is_date_before", "value": "-30d"}],
        [{"key": "language", "operator": "exact", "value": "de"}, {"key": "plan", "operator": "is_not",
                                                                   "value": "free"}],
        [{"key": "email", "operator": "regex", "value": r"^[a-z]+\.[a-z]+@(loom|acme)\.example$"}],
    ]
    for i, props in enumerate(filters):
        flags.append({"key": f"filtered-{i}", "conditions": [{"properties": props,
                                                              "rollout_percentage": 100 if i % 2 else 60}]})
    for i in range(10):
        variants = ([{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]
                    if i % 2 else
                    [{"key": "control", "rollout_percentage": 34}, {"key": "blue", "rollout_percentage": 33},
                     {"key": "green", "rollout_percentage": 33}])
        conditions: list[dict[str, Any]] = [{"rollout_percentage": 40 + i * 6}]
        if i % 3 == 0:
            conditions.insert(0, {"properties": [{"key": "email", "operator": "icontains", "value": "@loom.example"}],
                                  "variant": variants[-1]["key"]})
        flags.append({"key": f"experiment-{i}", "conditions": conditions, "variants": variants,
                      "payloads": {v["key"]: {"copy": f"{v['key']} copy {i}", "price": 10 + i}
                                   for v in variants}})
    for i in range(5):
        flags.append({"key": f"company-{i}", "group_type": "company",
                      "conditions": [{"properties": [{"key": "seats", "operator": "gt", "value": 5 * i}],
                                      "rollout_percentage": 30 + i * 15}]})
    for i in range(3):
        flags.append({"key": f"staged-{i}", "payloads": {"true": {"stage": i}},
                      "conditions": [{"properties": [{"key": "email", "operator": "icontains", "value": "@loom"}]},
                                     {"properties": [{"key": "plan", "operator": "exact", "value": "enterprise"},
                                                     {"key": "country", "operator": "exact", "value": ["DE", "US"]}],
                                      "rollout_percentage": 50},
                                     {"properties": [{"key": "signed_up", "operator": "is_date_after",
                                                      "value": "-90d"}], "rollout_percentage": 20 + i * 10},
                                     {"rollout_percentage": 2}]})
    for i in range(2):
        flags.append({"key": f"switched-off-{i}", "active": False})
    assert len(flags) == 50
    return flags


def flags_block() -> dict[str, Any]:
    return {"personal_api_keys": [PERSONAL_KEY], "group_types": ["company"], "definitions": definitions()}


def _letters(n: int) -> str:
    """n in base 26 as letters: a distinct e-mail address per person that the e-mail regex still matches."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out = chr(97 + digit) + out
        if not n:
            return out


def person(n: int, complete: bool = False) -> dict[str, Any]:
    """The ~10 person properties posthog-js sends for person n (setPersonPropertiesForFlags), varied so every
    filter goes both ways. `is_beta` and `legacy_id` are sent only by some people, as an application sets
    what it knows: a flag filtering on a property the request lacks makes the agent read the person's stored
    traits (one store read per request, as PostHog's server reads the person). `complete`: every person
    sends both (is_beta false, legacy_id null), so the agent never reads the store."""
    name = NAMES[n % len(NAMES)]
    return {"email": f"{name.lower()}.{_letters(n)}@{DOMAINS[n % len(DOMAINS)]}",
            "name": name, "plan": PLANS[n % len(PLANS)], "country": COUNTRIES[n % len(COUNTRIES)],
            "age": 18 + n % 60, "company_size": (n * 7) % 500, "app_version": 1 + n % 5,
            "signed_up": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00Z", "language": ("de", "en", "fr")[n % 3],
            "browser": BROWSERS[n % len(BROWSERS)],
            **({"is_beta": n % 4 == 0} if complete else {"is_beta": True} if n % 4 == 0 else {}),
            **({"legacy_id": n if n % 5 == 0 else None} if complete else {"legacy_id": n} if n % 5 == 0 else {})}


def body(n: int, complete: bool = False) -> bytes:
    """posthog-js's /flags body for person n (a company group with its properties)."""
    p = n % PEOPLE
    company = f"company-{p % 300}"
    return orjson.dumps({"token": KEY, "distinct_id": f"user-{p:05d}-{(p * 7919) % 10007}",
                         "groups": {"company": company}, "person_properties": person(p, complete),
                         "group_properties": {"company": {"seats": p % 40, "name": company}},
                         "timezone": "Europe/Berlin", "$anon_distinct_id": f"0192{p:08x}-anon"})


def canned_answer() -> bytes:
    """A /flags?v=2 answer of the 50 flags, the size the agent sends (the ceiling answers it)."""
    flags = {}
    for i, flag in enumerate(definitions()):
        flags[flag["key"]] = {"key": flag["key"], "enabled": True, "variant": None,
                              "reason": {"code": "condition_match", "condition_index": 0,
                                         "description": "Matched condition set 1"},
                              "metadata": {"id": i + 1, "version": 1234567, "description": None,
                                           "payload": None}}
    return orjson.dumps({"flags": flags, "errorsWhileComputingFlags": False,
                         "requestId": "01234567-89ab-cdef-0123-456789abcdef"})


async def ceiling_server() -> None:
    import gc

    from aiohttp import web

    from bench.ingest_load import serve

    gc.set_threshold(10_000, 20, 10)        # as the agent runs (agent/__main__.py)
    answer = canned_answer()

    async def handle(request: web.Request) -> web.Response:
        obj = orjson.loads(await request.read())
        if type(obj) is not dict or not obj.get("distinct_id"):
            raise web.HTTPBadRequest()
        return web.Response(body=answer, content_type="application/json")

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/flags/", handle)
    await serve(app)


def requests(host: str, port: int, complete: bool = False) -> list[bytes]:
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain\r\nOrigin: {ORIGIN}\r\n"
            "Content-Length: {}\r\n\r\n")
    out = []
    for n in range(PEOPLE):
        b = body(n, complete)
        out.append(head.format(len(b)).encode() + b)
    return out


def _flags_of(answer: bytes) -> int:
    return 1                                     # one request (the answer is checked in bench/flags.py)


async def open_loop(args: argparse.Namespace, host: str, port: int, raws: list[bytes]) -> dict:
    from bench import promtext
    from bench.load import HttpConnection

    loop = asyncio.get_running_loop()
    window_start, window_end = args.start_at + args.warmup, args.start_at + args.warmup + args.window
    idle: list[HttpConnection] = []
    stats: dict[str, Any] = {"events": 0, "requests": 0, "failed": 0, "errors": [], "late": 0, "connections_made": 0}
    latencies: list[float] = []

    async def one(n: int, slot: float) -> None:
        conn = None
        while idle:
            candidate = idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            _, conn = await loop.create_connection(HttpConnection, host, port)
            stats["connections_made"] += 1
        status, answer = await conn.request(raws[n % len(raws)])
        done = time.time()
        if not conn.closed:
            idle.append(conn)
        if not window_start <= slot <= window_end:
            return
        if status == 200:
            stats["requests"] += 1
            stats["events"] += 1
            latencies.append((done - slot) * 1000)
        else:
            stats["failed"] += 1
            if len(stats["errors"]) < 3:
                stats["errors"].append(f"{status}: {answer[:300]!r}")

    for _ in range(4):                               # a few warm connections, as a browser fleet keeps
        _, conn = await loop.create_connection(HttpConnection, host, port)
        idle.append(conn)
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    tasks: set[asyncio.Task] = set()
    n, slot = 0, args.start_at
    while slot < window_end:
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            stats["late"] += 1 if window_start <= slot else 0
        task = asyncio.create_task(one(n, slot))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        slot = args.start_at + n / args.rate
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    stats.update(window_seconds=args.window, rate=args.rate, sent=n, events_per_second=stats["requests"] / args.window,
                 batch_ms_p50=promtext.percentile(latencies, 0.5), batch_ms_p99=promtext.percentile(latencies, 0.99),
                 batch_ms_p999=promtext.percentile(latencies, 0.999), batch_ms_max=max(latencies, default=0.0),
                 connections=stats["connections_made"] + 4)
    return stats


async def load(args: argparse.Namespace) -> dict:
    from bench.ingest_load import closed_loop, host_port

    host, port = host_port(args.url)
    raws = requests(host, port, args.complete)
    if args.rate:
        return await open_loop(args, host, port, raws)
    stats = await closed_loop(args, host, port, lambda n: raws[n % len(raws)], _flags_of)
    return {**stats, "body_bytes": sum(map(len, raws[:1000])) // 1000}


def _flag_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--complete", action="store_true", help="every person sends every filtered property")


def main() -> None:
    run_role(__doc__ or "", ceiling_server, load, _flag_arguments)


if __name__ == "__main__":
    main()
