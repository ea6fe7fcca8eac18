"""Catalog: PostHog's own events, as posthog-js, posthog-node and posthog-python send them.

Why in the catalog: `$pageview`, `$pageleave`, `$autocapture` and `$rageclick` feed metrics (page views
and time on page by path template, clicks by event type and element tag), so they are listed with the
`$`-properties those metrics read; docs/events.md and docs/event-metrics.md are rendered from here. The
`$`-properties are kept by agent/events/posthog_props.py (bounded, each dropped alone when outside the
event limits), not checked against these entries: a property listed here is read when it has the
documented type and ignored otherwise. What the other PostHog events become (`$web_vitals`,
`$exception`, `$identify`, `$create_alias`, `$groupidentify`, `$opt_in`, ...) is in docs/posthog.md.
"""

from __future__ import annotations

from agent.events.catalog_types import EventSpec, array, event, number, obj, string

URL = string("The page's URL, without its query string and fragment.")
PATHNAME = string("The page's path; metrics read its template (numbers, UUIDs and id-like tokens -> `:id`).")
REFERRER = string("The referring URL, without its query string and fragment.")
PREV_PATHNAME = string("The path of the page `$prev_pageview_duration` measures.")
PREV_DURATION = number("Seconds spent on the previous page (posthog-js `capture_pageleave`).", minimum=0)
ELEMENTS = array("The clicked element and its ancestors (tag_name, classes, attributes, `$el_text` scrubbed).")
ELEMENTS_CHAIN = string("The same, as PostHog's `;`-separated chain (cut to whole elements within the string "
                        "limit).")
GROUPS = obj("The event's groups, group type -> group key (`$groups`).")

POSTHOG: tuple[EventSpec, ...] = (
    event("$pageview", "posthog", "A page view (posthog-js `capture_pageview`); also closes the previous page's "
          "time on page.",
          **{"$current_url": URL, "$pathname": PATHNAME, "$referrer": REFERRER,
             "$prev_pageview_pathname": PREV_PATHNAME, "$prev_pageview_duration": PREV_DURATION, "$groups": GROUPS}),
    event("$pageleave", "posthog", "The visitor left a page (posthog-js `capture_pageleave`): its time on page.",
          **{"$current_url": URL, "$pathname": PATHNAME, "$prev_pageview_pathname": PREV_PATHNAME,
             "$prev_pageview_duration": PREV_DURATION, "$groups": GROUPS}),
    event("$autocapture", "posthog", "An interaction posthog-js captured by itself: a click, a form submit, a "
          "change.",
          **{"$event_type": string("What happened.", enum={"click", "submit", "change", "copy", "cut"}),
             "$elements": ELEMENTS, "$elements_chain": ELEMENTS_CHAIN, "$current_url": URL, "$pathname": PATHNAME,
             "$groups": GROUPS}),
    event("$rageclick", "posthog", "Repeated clicks in the same place in a short time (posthog-js).",
          **{"$elements": ELEMENTS, "$elements_chain": ELEMENTS_CHAIN, "$current_url": URL, "$pathname": PATHNAME,
             "$groups": GROUPS}),
)
