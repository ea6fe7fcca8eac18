"""The ingest benchmark's event mix: deterministic batches of exactly 100 events, as the Loom web and
API clients would send them (camelCase properties), without timestamps: the agent stamps each event
with its own clock. Resent bodies therefore carry new, increasing times, as live traffic does; fixed
client timestamps repeating every 64 batches would make every index insert of the durable store land
at a random place, which no live traffic does (and cost the store a third more).

Per batch: two realtime connection lifecycles (13 events each: attempt, established, 8 messages,
latency, health check, disconnected or error -> one span each), one onboarding flow (3 steps started
and completed, then completed or abandoned -> a root span and 3 step spans), 4 notification funnels
(delivered -> displayed -> clicked | dismissed), 25 api_request (2 with W3C trace context -> one
span each), 12 web_vitals, 5 page_load, 8 marketing events (anonymous), 3 resource_viewed, 2
login_attempt. About 8 spans per 100 events; a batch is about 25 KB of JSON.

Connection and flow ids carry TOKEN; `fill(body, cycle)` replaces it (same length, so a pre-built
request keeps its Content-Length), so a resent batch opens new spans instead of being dropped as
late events of spans that already ended.
"""

from __future__ import annotations

import random

import orjson

TOKEN = b"@@@@@@"
DISTINCT_BATCHES = 64
ROUTES = ("/api/sessions/:id", "/api/sessions", "/api/goals/:id", "/api/tasks", "/api/resources/:id",
          "/api/notifications", "/api/auth/session", "/api/coaches/:id/availability")
PAGES = ("/", "/pricing", "/dashboard", "/sessions", "/resources", "/goals")
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def _event(name: str, ts: float, user: str, props: dict, **extra) -> dict:
    body = {"event": name, "userId": user, "sessionId": f"s_{user}", "properties": props}
    body.update(extra)
    return body


def _connection(rng: random.Random, cid: str, user: str, t0: float) -> list[dict]:
    """attempt, established, 8 messages, latency, health check, then disconnected (or error): 13 events."""
    transport = "websocket" if rng.random() < 0.85 else "sse"
    out = [_event("connection_attempt", t0, user, {"connectionId": cid, "transport": transport, "attempt": 1,
                                                    "endpoint": "/realtime"}),
           _event("connection_established", t0 + 0.08, user, {"connectionId": cid, "transport": transport,
                                                               "attempt": 1, "connectTimeMs": 80})]
    for i in range(8):
        out.append(_event("realtime_message", t0 + 1 + i, user, {
            "connectionId": cid, "messageType": rng.choice(("notification_update", "presence", "chat")),
            "bytes": rng.randrange(200, 4000), "direction": rng.choice(("inbound", "outbound")),
            "transport": transport}))
    out.append(_event("connection_latency", t0 + 9.5, user, {"connectionId": cid, "latencyMs": rng.randrange(20, 90),
                                                              "transport": transport}))
    out.append(_event("connection_health_check", t0 + 10, user, {"connectionId": cid, "healthy": True,
                                                                 "latencyMs": 31, "transport": transport}))
    if rng.random() < 0.2:
        out.append(_event("connection_error", t0 + 11, user, {"connectionId": cid, "transport": transport,
                                                               "reason": "network lost", "errorCode": "ECONNRESET"}))
    else:
        out.append(_event("connection_disconnected", t0 + 11, user, {
            "connectionId": cid, "transport": transport, "reason": "navigated away", "closeCode": 1000,
            "wasClean": True, "durationSeconds": 11}))
    return out


def _onboarding(rng: random.Random, flow: str, user: str, t0: float) -> list[dict]:
    """Three steps started + completed, then completed (or abandoned): 7 events, 4-5 spans."""
    out = []
    for n, step in enumerate(("welcome", "profile_setup", "calendar_sync"), start=1):
        base = {"step": step, "stepNumber": n, "totalSteps": 3, "flowId": flow}
        out.append(_event("onboarding_step_started", t0 + 60 * n, user, dict(base)))
        out.append(_event("onboarding_step_completed", t0 + 60 * n + 45, user,
                          {**base, "timeSpentSeconds": 45, "interactionCount": rng.randrange(1, 20)}))
    if rng.random() < 0.7:
        out.append(_event("onboarding_completed", t0 + 250, user, {"totalSteps": 3, "totalTimeSeconds": 250,
                                                                    "stepsSkipped": 0, "flowId": flow}))
    else:
        out.append(_event("onboarding_abandoned", t0 + 250, user, {"step": "calendar_sync", "stepNumber": 3,
                                                                    "totalSteps": 3, "timeSpentSeconds": 70,
                                                                    "reason": "closed the tab", "flowId": flow}))
    return out


def _notifications(rng: random.Random, b: int, user: str, t0: float) -> list[dict]:
    """Four delivered -> displayed -> clicked | dismissed funnels: 12 events."""
    out = []
    for k in range(4):
        common = {"notificationId": f"n_{b}_{k}", "notificationType": rng.choice(("session_reminder", "weekly_digest")),
                  "channel": rng.choice(("push", "email", "in_app"))}
        out.append(_event("notification_delivered", t0 + k, user, {**common, "deliveryLatencyMs": 120, "provider": "fcm"}))
        out.append(_event("notification_displayed", t0 + k + 2, user, dict(common)))
        if rng.random() < 0.4:
            out.append(_event("notification_clicked", t0 + k + 15, user, {
                **common, "clickAction": "view_session", "clickDestination": "/sessions/123",
                "timeSinceDeliverySeconds": 15}))
        else:
            out.append(_event("notification_dismissed", t0 + k + 40, user, {
                **common, "dismissMethod": "swipe", "timeSinceDeliverySeconds": 40}))
    return out


def _api_request(rng: random.Random, user: str, ts: float, traced: bool) -> dict:
    status = rng.choices((200, 201, 204, 304, 400, 401, 404, 500), (70, 8, 5, 5, 4, 3, 3, 2))[0]
    extra = {}
    if traced:
        extra["context"] = {"traceId": "%032x" % rng.getrandbits(128), "spanId": "%016x" % rng.getrandbits(64)}
    return _event("api_request", ts, user, {"route": rng.choice(ROUTES), "method": rng.choice(("GET", "GET", "POST")),
                                            "status": status, "durationMs": round(rng.lognormvariate(3.5, 0.8), 1),
                                            "service": "api", "responseBytes": rng.randrange(100, 20000)}, **extra)


def _web_vital(rng: random.Random, user: str, ts: float) -> dict:
    name = rng.choice(("LCP", "INP", "CLS", "TTFB", "FCP", "FID"))
    value = round(rng.uniform(0, 0.3), 3) if name == "CLS" else rng.randrange(20, 4000)
    return _event("web_vitals", ts, user, {"name": name, "value": value,
                                           "rating": rng.choice(("good", "good", "needs-improvement", "poor")),
                                           "delta": value, "id": f"v3-{rng.getrandbits(40)}"},
                  context={"page": rng.choice(PAGES), "userAgent": UA})


def _other(rng: random.Random, b: int, user: str, ts: float) -> list[dict]:
    """Page loads, marketing, resources and logins: 18 events."""
    anon = {"anonymousId": f"anon_{b}"}
    out = [_event("page_load", ts + i, user, {"page": rng.choice(PAGES), "loadTimeMs": rng.randrange(300, 4000),
                                              "ttfbMs": rng.randrange(50, 600), "navigationType": "navigate"},
                  context={"page": "/dashboard", "userAgent": UA}) for i in range(5)]
    for i in range(3):
        out.append({"event": "landing_page_view", **anon, "properties": {
            "page": "/pricing", "source": "google", "medium": "cpc", "campaign": "summer_trial",
            "experimentId": "pricing_test_v2", "variantId": rng.choice(("variant_a", "variant_b"))}})
        out.append({"event": "cta_click", **anon, "properties": {
            "ctaId": "hero_start_trial", "ctaText": "Start your free trial", "location": "hero", "page": "/"}})
    out += [{"event": "experiment_view", **anon, "properties": {
        "experimentId": "pricing_test_v2", "variantId": "variant_b", "page": "/pricing"}} for i in range(2)]
    out += [_event("resource_viewed", ts + i, user, {"resourceId": f"res_{rng.randrange(50)}", "resourceType": "pdf",
                                                     "viewDurationSeconds": rng.randrange(5, 600),
                                                     "scrollDepthPercent": rng.randrange(0, 101), "isFirstView": False})
            for i in range(3)]
    out += [_event("login_attempt", ts + i, user, {"result": rng.choice(("success", "success", "failure")),
                                                   "method": "password"}) for i in range(2)]
    return out


def batch(b: int, base: float) -> list[dict]:
    """Batch number `b` (deterministic) of exactly 100 events; ids carry TOKEN."""
    rng = random.Random(b)
    user = lambda: f"user_{rng.randrange(500)}"   # noqa: E731
    t0 = base + b * 0.05
    token = TOKEN.decode()
    events = _connection(rng, f"conn_{b}_0_{token}", user(), t0) + _connection(rng, f"conn_{b}_1_{token}", user(), t0)
    events += _onboarding(rng, f"flow_{b}_{token}", user(), t0 - 300)
    events += _notifications(rng, b, user(), t0)
    events += [_api_request(rng, user(), t0 + i * 0.1, traced=i < 2) for i in range(25)]
    events += [_web_vital(rng, user(), t0 + i) for i in range(12)]
    events += _other(rng, b, user(), t0)
    assert len(events) == 100, len(events)
    return events


def bodies(base: float) -> list[bytes]:
    return [orjson.dumps(batch(b, base)) for b in range(DISTINCT_BATCHES)]


def fill(body: bytes, cycle: int) -> bytes:
    return body.replace(TOKEN, b"%06d" % (cycle % 1_000_000))
