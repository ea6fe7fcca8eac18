"""The event catalog: every event the agent knows, by name, with its category and typed properties.

`CATALOG[name]` is an `EventSpec`; its `props` map snake_case property names to `Prop`s (type,
required, range, max length, closed enum). An event whose name is not here is a *custom* event
(category `custom`): accepted with generically typed properties unless `Limits.strict` is set.
The events themselves are listed in `catalog_product` (the documentation's categories) and
`catalog_platform` (auth, MFA, security, coaching sessions, ..., business events) and `catalog_posthog`
(PostHog's own `$pageview`, `$pageleave`, `$autocapture`, `$rageclick`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from agent.events import catalog_platform as platform, catalog_posthog as posthog, catalog_product as product
from agent.events.catalog_types import EventSpec, Prop

__all__ = ["CATALOG", "CATEGORIES", "CUSTOM", "EventSpec", "Prop"]

CUSTOM = "custom"

CATEGORIES: Mapping[str, str] = MappingProxyType({
    "marketing": "Marketing and conversion: landing pages, leads, the signup funnel, campaigns, A/B tests.",
    "onboarding": "The onboarding flow: steps started and completed, abandonment, activation milestones.",
    "resource": "Engagement with the resource library: views, downloads, shares, searches, ratings.",
    "notification": "Notification delivery and engagement, permissions and preferences.",
    "realtime": "The realtime channel: connection lifecycle, messages, latency, fallbacks.",
    "auth": "Logins and logouts.",
    "mfa": "Second factors: challenges, verifications, enrolment.",
    "security": "Security-relevant events with a type and severity.",
    "session": "Coaching sessions: booked, completed, cancelled, rated.",
    "goal": "Goals created and completed.",
    "task": "Tasks created and completed.",
    "file": "File uploads, downloads and shares.",
    "performance": "API request timings and page loads.",
    "web_vitals": "Core Web Vitals measured in the browser (LCP, INP, FID, CLS, TTFB, FCP).",
    "business": "Business events: feature usage, trials, subscriptions, payments.",
    "posthog": "PostHog's own events (posthog-js, posthog-node, posthog-python) that feed metrics.",
    CUSTOM: "Any event name the catalog does not list; properties are kept, typed generically.",
})


def _build(groups: Iterable[tuple[EventSpec, ...]]) -> Mapping[str, EventSpec]:
    catalog: dict[str, EventSpec] = {}
    for group in groups:
        for spec in group:
            if spec.name in catalog:
                raise ValueError(f"event {spec.name!r} is listed twice")
            if spec.category not in CATEGORIES or spec.category == CUSTOM:
                raise ValueError(f"event {spec.name!r}: unknown category {spec.category!r}")
            catalog[spec.name] = spec
    return MappingProxyType(catalog)


CATALOG: Mapping[str, EventSpec] = _build((
    product.MARKETING, product.ONBOARDING, product.RESOURCE, product.NOTIFICATION, product.REALTIME,
    platform.AUTH, platform.MFA, platform.SECURITY, platform.SESSION, platform.GOAL, platform.TASK,
    platform.FILE, platform.PERFORMANCE, platform.WEB_VITALS, platform.BUSINESS, posthog.POSTHOG,
))
