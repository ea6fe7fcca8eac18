"""The demo's traffic: short stories a coaching application's users live, as `/v1/events/batch` events.

A story keeps the event order a real client sends (a landing page view before the signup steps, a
connection attempt before its messages, a delivery before its click) and its identifiers (one
onboarding `flowId`, one `connectionId`), so the agent's spans and the analytics API see coherent
flows, not noise. `tour()` is one of every catalog event plus the outcomes dashboards filter on
(failed logins and MFA checks, 5xx responses, unclean disconnects...): sent first, so every metric
series exists from the start; `events(n)` then draws stories by weight.
"""

from __future__ import annotations

from random import Random
from typing import Any

from agent.demo.events import BUILDERS, LANDING, ONBOARDING_STEPS, PAGES, SIGNUP_STEPS, VITALS, api_request, web_vital
from agent.demo.extras import RELEASES

Event = dict[str, Any]
OPEN_CONNECTIONS = 40          # realtime connections the stories keep open, about
CUSTOM_EVENTS = ("report_exported", "calendar_connected", "invite_sent")


class Traffic:
    def __init__(self, seed: int | None = None, users: int = 500):
        self.r = Random(seed)
        # the application release each event names (envelope `release`); None: events carry none, for
        # agents that predate it (the sender turns it off when the agent refuses the key)
        self.releases: tuple[str, ...] | None = RELEASES
        self.users = [f"demo_user_{i}" for i in range(users)]
        self.connections: dict[str, tuple[str, str]] = {}     # open connection id -> (transport, user)
        self._stories = [(self.visit, 12), (self.onboarding, 4), (self.login, 10), (self.coaching, 6),
                         (self.resources, 8), (self.notifications, 10), (self.realtime, 14), (self.files, 3),
                         (self.performance, 20), (self.business, 8), (self.custom, 1)]

    # --- envelope ------------------------------------------------------------------------------
    def _id(self, bits: int = 64) -> str:
        return f"{self.r.getrandbits(bits) | 1:0{bits // 4}x}"

    def event(self, name: str, user: str | None = None, /, **overrides: Any) -> Event:
        """The /v1/events body of one event: the builder's properties with `overrides` on top
        (positional-only `name`: web_vitals has a property called name), except `context` (a dict or
        None; the stories pass it among the properties they spread), the event's context."""
        context: dict[str, Any] | None = overrides.pop("context", None)
        body: Event = {"event": name, "eventId": self._id(128),
                       "properties": {**BUILDERS[name](self.r), **overrides} if name in BUILDERS else overrides}
        if user:
            body["userId"] = user
        else:
            body["anonymousId"] = f"anon_{self._id(48)}"
        if context:
            body["context"] = context
        if self.releases:
            body["release"] = self.r.choice(self.releases)
        return body

    def user(self) -> str:
        return self.r.choice(self.users)

    # --- what is sent ----------------------------------------------------------------------------
    def tour(self) -> list[Event]:
        """Every catalog event once, then the outcomes a plain draw may take long to reach."""
        user = self.user()
        events = [self.event(name, user) for name in BUILDERS]
        variants: list[tuple[str, dict[str, Any]]] = [
            ("login_attempt", {"result": "failure", "failure_reason": "invalid_credentials"}),
            ("mfa_verification", {"result": "failure", "failure_reason": "invalid_code"}),
            ("connection_disconnected", {"wasClean": False, "closeCode": 1006}),
            ("connection_health_check", {"healthy": False}),
            ("api_request", {"status": 503, "route": "/api/payments/checkout", "method": "POST", "duration_ms": 2400}),
            ("api_request", {"status": 404}),
            *[("signup_step", {"status": status}) for status in ("completed", "failed", "abandoned")],
            *[("web_vitals", web_vital(self.r, name, "/dashboard")) for name in VITALS],
        ]
        events += [self.event(name, user, **props) for name, props in variants]
        events.append(self.event("landing_page_view", context={"dnt": True}))     # dropped by privacy
        for connection, (transport, owner) in self.connections.items():
            events.append(self.event("connection_disconnected", owner, connectionId=connection, transport=transport))
        self.connections.clear()
        return events

    def events(self, n: int) -> list[Event]:
        """About `n` events: whole stories drawn by weight."""
        out: list[Event] = []
        while len(out) < n:
            out += self.story()
        return out

    def story(self) -> list[Event]:
        """One story drawn by weight: its events in the order a client sends them."""
        stories, weights = zip(*self._stories)
        return self.r.choices(stories, weights)[0]()

    # --- the stories -----------------------------------------------------------------------------
    def visit(self) -> list[Event]:
        """An anonymous visitor: landing page, maybe an A/B test, a CTA, the signup funnel."""
        context = {"page": self.r.choice(LANDING), "dnt": True} if self.r.random() < 0.03 else None
        anonymous: dict[str, Any] = {"context": context}
        view = self.event("landing_page_view", **anonymous)
        utm = {k: view["properties"][k] for k in ("source", "medium", "campaign")}
        out = [view]
        if view["properties"]["page"] == "/pricing":
            out.append(self.event("experiment_view", **anonymous))
        if self.r.random() < 0.5:
            out.append(self.event("cta_click", **anonymous))
        if self.r.random() < 0.1:
            out.append(self.event("newsletter_signup", **anonymous))
        if self.r.random() < 0.15:
            out.append(self.event("lead_capture", **anonymous, **utm))
        if self.r.random() < 0.25:
            out += self._signup(utm, anonymous)
        if self.r.random() < 0.05:
            out.append(self.event("referral", **anonymous))
        return out

    def _signup(self, utm: dict[str, str], anonymous: dict[str, Any]) -> list[Event]:
        out = []
        method = self.r.choice(["email", "google", "apple"])
        for number, step in enumerate(SIGNUP_STEPS, 1):
            common = {"step": step, "stepNumber": number, "method": method, **utm}
            out.append(self.event("signup_step", **anonymous, **common, status="started"))
            if self.r.random() < 0.12:                # the funnel loses about one in eight at each step
                status = self.r.choice(["abandoned", "abandoned", "failed"])
                out.append(self.event("signup_step", **anonymous, **common, status=status))
                return out
            out.append(self.event("signup_step", **anonymous, **common, status="completed",
                                  timeSpentSeconds=round(self.r.uniform(5, 90), 1)))
        out.append(self.event("campaign_conversion", **anonymous, **utm,
                              conversionType=self.r.choice(["signup", "trial"]), conversionValue=0))
        return out

    def onboarding(self) -> list[Event]:
        """A new user's onboarding flow, one flowId: completed, or abandoned at a step."""
        user, flow = self.user(), f"flow_{self._id()}"
        out, spent = [], 0.0
        total = len(ONBOARDING_STEPS)
        for number, step in enumerate(ONBOARDING_STEPS, 1):
            common = {"step": step, "stepNumber": number, "totalSteps": total, "flowId": flow}
            out.append(self.event("onboarding_step_started", user, **common))
            if self.r.random() < 0.5:
                out.append(self.event("onboarding_hint_interaction", user, step=step, flowId=flow))
            if self.r.random() < 0.07 + 0.05 * (step == "calendar_sync"):
                out.append(self.event("onboarding_abandoned", user, **common))
                if self.r.random() < 0.3:
                    out.append(self.event("onboarding_reengagement", user, step=step, flowId=flow))
                return out
            completed = self.event("onboarding_step_completed", user, **common)
            spent += completed["properties"]["timeSpentSeconds"]
            out.append(completed)
            if step == "preferences":
                out.append(self.event("onboarding_personalization", user, flowId=flow,
                                      role=self.r.choice(["client", "client", "client", "coach"])))
            if self.r.random() < 0.3:
                out.append(self.event("feature_discovered", user, step=step, flowId=flow))
        out.append(self.event("onboarding_completed", user, flowId=flow, totalTimeSeconds=round(spent)))
        out.append(self.event("first_action", user))
        return out

    def login(self) -> list[Event]:
        """A login, sometimes failed, sometimes with a second factor; a later logout."""
        user = self.user()
        if self.r.random() < 0.08:
            out = [self.event("login_attempt", user, result="failure", failure_reason=self.r.choice(
                ["invalid_credentials", "invalid_credentials", "user_not_found", "rate_limited"]))]
            if self.r.random() < 0.1:
                out.append(self.event("security_event", user))
            return out
        out = [self.event("login_attempt", user)]
        if out[0]["properties"]["mfa_required"]:
            challenge = self.event("mfa_challenge_sent", user)
            method = challenge["properties"]["method"]
            failed = self.r.random() < 0.08
            out += [challenge, self.event("mfa_verification", user, method=method,
                                          result="failure" if failed else "success",
                                          **({"failure_reason": "invalid_code"} if failed else {}))]
        if self.r.random() < 0.05:
            out.append(self.event("mfa_enrolled", user))
        if self.r.random() < 0.01:
            out.append(self.event("mfa_disabled", user))
        if self.r.random() < 0.5:
            out.append(self.event("logout", user))
        return out

    def coaching(self) -> list[Event]:
        """A session booked, then completed (and rated) or cancelled; goals and tasks around it."""
        user = self.user()
        booked = self.event("session_booked", user, coachingSessionId=f"cs_{self._id()}")
        p = booked["properties"]
        same = {"coaching_session_id": p["coachingSessionId"], "coach_id": p["coachId"],
                "session_type": p["sessionType"]}
        out = [booked]
        if self.r.random() < 0.15:
            out.append(self.event("session_cancelled", user, **same))
        else:
            out.append(self.event("session_completed", user, **same))
            if self.r.random() < 0.6:
                out.append(self.event("session_rated", user, **same))
        for name, chance in (("goal_created", 0.3), ("goal_completed", 0.15), ("task_created", 0.7),
                             ("task_completed", 0.5)):
            if self.r.random() < chance:
                out.append(self.event(name, user))
        return out

    def resources(self) -> list[Event]:
        user = self.user()
        out = [self.event("resource_search", user)] if self.r.random() < 0.4 else []
        out += [self.event("resource_recommendation", user), self.event("resource_viewed", user)]
        for name, chance in (("resource_downloaded", 0.3), ("resource_shared", 0.1), ("resource_rating", 0.2),
                             ("resource_engagement_score", 0.2), ("resource_created", 0.1), ("resource_deleted", 0.02)):
            if self.r.random() < chance:
                out.append(self.event(name, user))
        return out

    def notifications(self) -> list[Event]:
        """One notification: delivered, displayed, clicked or dismissed; or a failed delivery."""
        user = self.user()
        first = self.event("notification_delivered", user)
        same = {k: first["properties"][k] for k in ("notificationId", "notificationType", "channel")}
        if self.r.random() < 0.06:
            out = [self.event("notification_delivery_failure", user, **same)]
        else:
            out = [first, self.event("notification_displayed", user, **same)]
            roll = self.r.random()
            if roll < 0.25:
                out.append(self.event("notification_clicked", user, **same))
            elif roll < 0.3:
                out.append(self.event("notification_action_click", user, **same))
            elif roll < 0.6:
                out.append(self.event("notification_dismissed", user, **same))
        for name, chance in (("push_permission_request", 0.05), ("notification_preferences_update", 0.04),
                             ("notification_opt_out", 0.01), ("notification_engagement_rate", 0.01),
                             ("notification_batch_operation", 0.05)):
            if self.r.random() < chance:
                out.append(self.event(name, user))
        return out

    def realtime(self) -> list[Event]:
        """Open a connection (or fail to, and fall back to polling), use an open one, or close one."""
        roll, open_now = self.r.random(), len(self.connections)
        connect = 0.3 if open_now < OPEN_CONNECTIONS else 0.1       # the pool hovers around OPEN_CONNECTIONS
        close = connect + 0.1 * open_now / OPEN_CONNECTIONS
        if not self.connections or roll < connect:
            return self._connect(self.user())
        connection = self.r.choice(list(self.connections))
        transport, user = self.connections[connection]
        same = {"connectionId": connection, "transport": transport}
        if roll < close:
            del self.connections[connection]
            clean = self.r.random() < 0.9
            return [self.event("connection_disconnected", user, **same, wasClean=clean,
                               closeCode=1000 if clean else 1006)]
        out = [self.event("realtime_message", user, **same) for _ in range(self.r.randrange(1, 4))]
        out.append(self.event(self.r.choice(["connection_latency", "connection_health_check"]), user, **same))
        if same["transport"] == "polling" and self.r.random() < 0.3:
            out.append(self.event("connection_upgrade", user, connectionId=connection, fromTransport="polling",
                                  toTransport="websocket"))
            self.connections[connection] = ("websocket", user)
        return out

    def _connect(self, user: str) -> list[Event]:
        connection = f"conn_{self._id()}"
        transport = self.r.choices(["websocket", "sse", "polling"], [85, 10, 5])[0]
        same = {"connectionId": connection, "transport": transport}
        out = [self.event("connection_attempt", user, **same)]
        if self.r.random() < 0.06:
            out.append(self.event("connection_error", user, **same))
            if transport != "polling" and self.r.random() < 0.6:
                fallback = f"conn_{self._id()}"
                out += [self.event("fallback_polling_activated", user, connectionId=connection,
                                   fromTransport=transport),
                        self.event("connection_attempt", user, connectionId=fallback, transport="polling"),
                        self.event("connection_established", user, connectionId=fallback, transport="polling")]
                self.connections[fallback] = ("polling", user)
            return out
        out.append(self.event("connection_established", user, **same))
        self.connections[connection] = (transport, user)
        return out

    def files(self) -> list[Event]:
        user = self.user()
        return [self.event(self.r.choices(["file_uploaded", "file_downloaded", "file_shared"], [4, 5, 1])[0], user)]

    def performance(self) -> list[Event]:
        """A page view: its load, its Web Vitals, and the API requests behind it (with trace context)."""
        user, page = self.user(), self.r.choice(PAGES)
        out = [self.event("page_load", user, page=page)]
        out += [self.event("web_vitals", user, **web_vital(self.r, name, page))
                for name in VITALS if self.r.random() < 0.3]
        trace = {"traceId": self._id(128), "spanId": self._id(64)} if self.r.random() < 0.3 else None
        for _ in range(self.r.randrange(1, 5)):
            request = api_request(self.r)
            if self.r.random() < 0.02:            # the occasional slow request (the degradation alert's input)
                request["duration_ms"] = round(self.r.uniform(1100, 4000), 1)
            out.append(self.event("api_request", user, context=trace, **request))
        return out

    def business(self) -> list[Event]:
        user = self.user()
        out = [self.event("feature_used", user)]
        roll = self.r.random()
        if roll < 0.2:
            out.append(self.event("trial_started", user))
            if self.r.random() < 0.3:
                out.append(self.event("trial_converted", user))
        elif roll < 0.3:
            out.append(self.event("subscription_started", user))
        elif roll < 0.35:
            out.append(self.event("subscription_changed", user))
        elif roll < 0.38:
            out.append(self.event("subscription_cancelled", user))
        if self.r.random() < 0.3:
            failed = self.r.random() < 0.07
            out.append(self.event("payment_failed" if failed else "payment_succeeded", user))
        return out

    def custom(self) -> list[Event]:
        """An event outside the catalog: counted as category `custom`, stored with its properties."""
        return [self.event(self.r.choice(CUSTOM_EVENTS), self.user(), source="demo")]
