"""The soak's load generator, run as its own process (bench/soak.py starts it on the helper core):

    python bench/soak_load.py --url URL --rate EVENTS_PER_S --start-at UNIX --seconds S [--max-connections N]

Open loop: batch n of 100 events (bench/ingest_events.py, the ingest benchmark's mix) is due at
start-at + n / (rate / 100), whether or not earlier batches were answered, so a slow agent shows up as
latency instead of a lower send rate (no coordinated omission). A due batch goes out on an idle keep-alive
connection, or a new one up to --max-connections, else it waits for one: its latency is counted from
the instant it was due, so that wait is included. A request without an answer in --timeout seconds is
an error. Prints one JSON object when done: totals, errors by kind, latency percentiles overall and per
minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.ingest_events import bodies, fill  # noqa: E402
from bench.load import HttpConnection  # noqa: E402
from bench.promtext import percentile  # noqa: E402

EVENTS_PER_BATCH = 100


class Pool:
    """Keep-alive connections to the agent: idle ones are reused, at most `limit` are open."""

    def __init__(self, host: str, port: int, limit: int):
        self.host, self.port, self.limit = host, port, limit
        self.idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        self.open = 0
        self.most_open = 0

    async def take(self) -> HttpConnection:
        if self.idle.empty() and self.open < self.limit:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                _, conn = await asyncio.get_running_loop().create_connection(HttpConnection, self.host, self.port)
            except OSError:
                self.open -= 1
                raise
            return conn
        return await self.idle.get()

    def give_back(self, conn: HttpConnection, healthy: bool) -> None:
        if healthy and not conn.closed:
            self.idle.put_nowait(conn)
            return
        self.open -= 1
        if conn.transport is not None:
            conn.transport.close()


class Record:
    """Every request's due time (s after start), latency (ms) and outcome."""

    def __init__(self) -> None:
        self.due: list[float] = []
        self.latency_ms: list[float] = []
        self.ok: list[bool] = []
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.accepted = 0

    def add(self, due: float, latency_ms: float, error: str | None, detail: str = "") -> None:
        self.due.append(due)
        self.latency_ms.append(latency_ms)
        self.ok.append(error is None)
        if error is not None:
            self.errors[error] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{error}: {detail[:300]}")


async def send(pool: Pool, raw: bytes, due: float, start: float, timeout: float, record: Record) -> None:
    try:
        conn = await pool.take()
    except OSError as exc:
        record.add(due - start, (time.time() - due) * 1000, "connect", repr(exc))
        return
    healthy = False
    try:
        status, body = await asyncio.wait_for(conn.request(raw), timeout)
        latency = (time.time() - due) * 1000
        if status == 200:
            healthy = True
            record.accepted += orjson.loads(body)["accepted"]
            record.add(due - start, latency, None)
        else:
            healthy = status < 500
            record.add(due - start, latency, f"http_{status}", body.decode(errors="replace"))
    except asyncio.TimeoutError:
        record.add(due - start, (time.time() - due) * 1000, "timeout")
    except (ConnectionError, OSError, ValueError) as exc:
        record.add(due - start, (time.time() - due) * 1000, "connection", repr(exc))
    finally:
        pool.give_back(conn, healthy)


def summary(record: Record, args: argparse.Namespace, sent: int, most_open: int, late_ms: list[float]) -> dict:
    ok_latency = [ms for ms, ok in zip(record.latency_ms, record.ok) if ok]
    minutes = []
    for minute in range(int(args.seconds // 60) + (1 if args.seconds % 60 else 0)):
        picked = [(ms, ok) for due, ms, ok in zip(record.due, record.latency_ms, record.ok)
                  if minute * 60 <= due < (minute + 1) * 60]
        good = [ms for ms, ok in picked if ok]
        minutes.append({"minute": minute + 1, "requests": len(picked), "errors": sum(1 for _, ok in picked if not ok),
                        "events_per_second": len(good) * EVENTS_PER_BATCH / min(60.0, args.seconds - minute * 60),
                        "p50_ms": round(percentile(good, 0.5), 2), "p99_ms": round(percentile(good, 0.99), 2)})
    return {"rate_events_per_second": args.rate, "seconds": args.seconds, "requests": sent,
            "answered": len(record.ok), "ok": len(ok_latency), "errors": sum(record.errors.values()),
            "errors_by_kind": dict(record.errors), "error_samples": record.error_samples,
            "events_accepted": record.accepted, "events_per_second": record.accepted / args.seconds,
            "latency_ms": {"p50": round(percentile(ok_latency, 0.5), 2), "p90": round(percentile(ok_latency, 0.9), 2),
                           "p99": round(percentile(ok_latency, 0.99), 2),
                           "p999": round(percentile(ok_latency, 0.999), 2),
                           "max": round(max(ok_latency, default=float("nan")), 2)},
            "dispatch_late_ms_p99": round(percentile(late_ms, 0.99), 2), "connections_most_open": most_open,
            "per_minute": minutes}


async def run(args: argparse.Namespace) -> dict:
    host, port = args.url.split("//", 1)[1].split("/")[0].split(":")
    head = (f"POST /v1/events/batch HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "User-Agent: loom-soak\r\nContent-Length: {}\r\n\r\n")
    raws = [head.format(len(b)).encode() + b for b in bodies(time.time())]
    pool = Pool(host, int(port), args.max_connections)
    record = Record()
    interval = EVENTS_PER_BATCH / args.rate
    total = int(args.seconds / interval)
    tasks: set[asyncio.Task] = set()
    late_ms: list[float] = []
    for n in range(total):
        due = args.start_at + n * interval
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late_ms.append(max(0.0, time.time() - due) * 1000)
        raw = fill(raws[n % len(raws)], n // len(raws))
        task = asyncio.create_task(send(pool, raw, due, args.start_at, args.timeout, record))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout + 5)
    return summary(record, args, total, pool.most_open, late_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="events per second (100 per batch)")
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    import uvloop

    json.dump(uvloop.run(run(args)), sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
