"""posthog-js-shaped batches for bench/posthog.py: what posthog-js 1.449 sends to /e/ with request batching,
a JSON array of 50 events of about 40 properties each ($pageview, $autocapture, $pageleave and a custom
event, the properties posthog-js adds to every event, a few UTM and custom ones), gzip, as text/plain.
Every event gets a new uuid per request (a retry of the same uuid would be a duplicate: cheaper)."""

from __future__ import annotations

import gzip
import time
import uuid

import orjson

KEY = "phc_bench_posthog_0123456789abcdef"
EVENTS_PER_BATCH = 50
_NAMES = ("$pageview", "$autocapture", "$pageleave", "pricing_viewed")
_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 "
       "Safari/537.36")
_PLACEHOLDER = "00000000-0000-7000-8000-{:012d}"


def _event(i: int, now: float) -> dict:
    name = _NAMES[i % len(_NAMES)]
    user = f"user-{i % 17}"
    props = {
        "$os": "Mac OS X", "$os_version": "14.5.0", "$browser": "Chrome", "$browser_version": 131,
        "$device_type": "Desktop", "$timezone": "Europe/Vienna", "$browser_language": "en-US",
        "$current_url": f"https://app.example.com/clients/{1000 + i}/sessions?tab=notes",
        "$host": "app.example.com", "$pathname": f"/clients/{1000 + i}/sessions", "$raw_user_agent": _UA,
        "$screen_height": 1117, "$screen_width": 1728, "$viewport_height": 963, "$viewport_width": 1728,
        "$lib": "web", "$lib_version": "1.449.2", "$insert_id": f"ins{i:08d}", "$time": now,
        "distinct_id": user, "$device_id": "019300aa-bbbb-7ccc-8ddd-eeeeeeeeeeee", "$user_id": user,
        "$session_id": "019300aa-bbbb-7ccc-8ddd-000000000001", "$window_id": "019300aa-bbbb-7ccc-8ddd-000000000002",
        "$pageview_id": "019300aa-bbbb-7ccc-8ddd-000000000003", "$referrer": "https://www.google.com/",
        "$referring_domain": "www.google.com", "$is_identified": True, "$process_person_profile": True,
        "token": KEY, "$configured_session_timeout_ms": 1800000, "$sdk_debug_retry_queue_size": 0,
        "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring",
        "plan": "pro", "role": "coach", "clientCount": 12, "experimentVariant": "b",
    }
    return {"uuid": _PLACEHOLDER.format(i), "event": name, "properties": props,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".123Z"}


class Batches:
    """`body(n)`: the n-th request's gzip body, every uuid new."""

    def __init__(self, level: int = 1):
        now = time.time()
        events = [_event(i, now) for i in range(EVENTS_PER_BATCH)]
        self.template = orjson.dumps(events)
        self.prefix = uuid.uuid4().hex[:8]
        self.level = level
        self.uncompressed = len(self.template)
        self.compressed = len(self.body(0))

    def raw(self, n: int) -> bytes:
        tag = f"{self.prefix[:4]}{n % 10**8:08d}"[-12:]
        # the placeholder's first group (8 zeros) carries the request number: uuids unique per request
        return self.template.replace(b'"00000000-0000-7000-8000-', f'"{tag[:8]}-{tag[8:]}-7000-8000-'.encode())

    def body(self, n: int) -> bytes:
        return gzip.compress(self.raw(n), compresslevel=self.level, mtime=0)
