"""PostHog's own `$`-properties: which a stored event keeps, and the bounded values metrics read from them.

Why a policy of its own: a posthog-js event carries 40 to 80 `$`-properties (`$current_url`,
`$browser`, `$os`, `$screen_width`, UTM, `$elements`, one `$feature/<flag>` per feature flag, the SDK's
echo of its remote config, ...). Checked like the application's properties, one long `$elements_chain`
or an 81st flag would reject the whole batch, so they are lifted apart (`lift_dollar`): kept beside the
properties, at most MAX_DOLLAR_PROPERTIES of them (not counted in `max_properties`), each within the
event limits (depth, string length) or dropped alone and counted, never failing the event. Privacy then
scrubs them like any property (e-mail addresses, card numbers, secret-named keys, `$el_text` of a
clicked element).

Left out on purpose: what becomes an envelope or context field (`$ip`, `$user_agent`, `$session_id`,
`$insert_id`, `$lib`: stored there, where privacy treats them as the ids and addresses they are), the
person's ids (`$device_id`, `$user_id`, `$anon_distinct_id`), what goes to the person or the errors
pipeline (`$set`, `$set_once`, `$unset`, `$exception_list`, `$group_set`), and the SDK's echo of its
settings (`$feature/...`, `*_server_side`, `$replay_*`, `$sdk_debug_*`, ...). URLs keep no query string
or fragment (magic links and reset tokens live there; UTM parameters arrive as their own properties).

Metrics never read a raw URL: `path_template` folds a page to its template (ids out) and
`element_tag` reads the clicked element's tag from a closed set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.events.limits import Limits
from agent.events.properties import PROPERTY_NAME, FieldError, check_generic

MAX_DOLLAR_PROPERTIES = 100
PATH_MAX = 256                     # a template longer than this is cut (a label value, not a page)
_BIG = 2**64                       # integers within orjson's range, as check_generic wants

# read into the envelope / context, the person or the errors pipeline, or ids of the person
ELSEWHERE = frozenset({
    "$ip", "$user_agent", "$raw_user_agent", "$session_id", "$insert_id", "$lib", "$lib_version",
    "$device_id", "$user_id", "$anon_distinct_id", "$set", "$set_once", "$unset", "$exception_list",
    "$group_set", "$snapshot_data", "$is_identified", "$process_person_profile", "$time",
})
_NOISE_PREFIXES = ("$feature/", "$feature_flag_", "$replay_", "$sdk_debug", "$session_recording_",
                   "$console_log_", "$lib_rate_limit", "$config_", "$survey_", "$web_vitals_allowed",
                   "$dead_clicks_", "$autocapture_disabled", "$exception_capture_", "$heatmaps_", "$configured_")
_NOISE_SUFFIXES = ("_server_side",)
# a `$feature_flag_called` exposure's flag and answer: what experiments read (agent/analytics/experiments.py)
EXPOSURE = frozenset({"$feature_flag", "$feature_flag_response"})
_URLS = frozenset({"$current_url", "$referrer", "$initial_current_url", "$initial_referrer",
                   "$session_entry_url", "$session_entry_referrer", "$prev_pageview_url", "$href"})
# kept first, so a crowded event never loses these to the cap
KNOWN = ("$current_url", "$pathname", "$host", "$referrer", "$referring_domain", "$browser", "$browser_version",
         "$os", "$os_version", "$device_type", "$screen_width", "$screen_height", "$viewport_width",
         "$viewport_height", "$browser_language", "$timezone", "$window_id", "$pageview_id",
         "$prev_pageview_pathname", "$prev_pageview_duration", "$prev_pageview_last_scroll_percentage",
         "$event_type", "$elements", "$elements_chain", "$el_text", "$groups", "$group_type", "$group_key")
_KNOWN = frozenset(KNOWN)
_QUERY = re.compile(r"[?#].*", re.DOTALL)
_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_ID_SEGMENT = re.compile(
    r"[0-9]+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"   # numbers, UUIDs
    r"|(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}"                                                    # hex ids
    r"|(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}")                    # tokens, slugs+ids
# the element tags autocapture reports; any other tag counts as "other" (custom elements are unbounded)
TAGS = frozenset({"a", "button", "input", "select", "textarea", "form", "label", "option", "img", "svg", "path",
                  "span", "div", "p", "li", "ul", "ol", "nav", "header", "footer", "section", "article", "main",
                  "h1", "h2", "h3", "h4", "h5", "h6", "i", "strong", "em", "summary", "details", "td", "tr",
                  "th", "table", "video", "audio", "canvas", "iframe", "other"})
EVENT_TYPES = frozenset({"click", "submit", "change", "rageclick", "copy", "cut", "other"})
_TAG = re.compile(r"[a-z][a-z0-9-]*")


def _noise(key: str) -> bool:
    return key not in EXPOSURE and (key.startswith(_NOISE_PREFIXES) or key.endswith(_NOISE_SUFFIXES))


def strip_query(url: str) -> str:
    """A URL or path without its query string and fragment."""
    return _QUERY.sub("", url) if "?" in url or "#" in url else url


def _bounded_chain(chain: str, longest: int) -> str:
    """`$elements_chain` (the clicked element first, then its ancestors, `;`-separated) cut to whole
    elements: the nearest ancestors are the ones that say what was clicked."""
    if len(chain) <= longest:
        return chain
    cut = chain.rfind(";", 0, longest + 1)
    return chain[:cut] if cut > 0 else ""


_SKIP, _KEEP, _URL, _CHAIN = 0, 1, 2, 3
_KINDS: dict[str, int] = {}                 # `$`-key -> what to do with it (cached: keys repeat)
_KINDS_MAX = 10_000                         # random keys must not grow the cache forever


def _kind(key: str, limits: Limits) -> int:
    kind = _KINDS.get(key)
    if kind is None:
        if key in ELSEWHERE or _noise(key):
            kind = _SKIP
        elif len(key) > limits.max_name_length or not PROPERTY_NAME.fullmatch(key):
            kind = -1                       # not a property name: dropped, counted
        else:
            kind = _URL if key in _URLS else _CHAIN if key == "$elements_chain" else _KEEP
        if len(_KINDS) < _KINDS_MAX:
            _KINDS[key] = kind
    return kind


def _lifted(shape: tuple[Any, ...], limits: Limits) -> tuple[tuple[str, int], ...]:
    """The `$`-keys of an event's key set to read, in order, with what to do with each."""
    keys = [key for key in shape if key.__class__ is str and key[:1] == "$"]
    if len(keys) > MAX_DOLLAR_PROPERTIES:               # the known ones first, so the cap never takes them
        present = set(keys)
        keys = [key for key in KNOWN if key in present] + [key for key in keys if key not in _KNOWN]
    return tuple((key, kind) for key in keys if (kind := _kind(key, limits)) != _SKIP)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the keys of one event's properties become, worked out once per key set: the application's
    own properties (`plain`), the `$`-properties kept beside them (`lifted`, with what to do with each)
    and those read into the envelope or context (`mapped`: (source, target), in precedence order)."""

    plain: tuple[Any, ...]
    lifted: tuple[tuple[str, int], ...]
    mapped: tuple[tuple[str, str], ...]
    capped: bool                                   # more `$`-properties than MAX_DOLLAR_PROPERTIES


# $-property -> envelope or context key; the first one present of each target wins
MAPPED = (("$session_id", "session_id"), ("$insert_id", "event_id"), ("$current_url", "page"),
          ("$pathname", "page"), ("$user_agent", "user_agent"), ("$raw_user_agent", "user_agent"),
          ("$ip", "ip"), ("$lib", "library"))
_NOT_PLAIN = frozenset({"token", "distinct_id"})
_PLANS: dict[tuple[Any, ...], Plan] = {}   # key set -> plan: an SDK's events share few
_PLANS_MAX = 1_000
_planned_for: list[Limits] = []          # the limits the cached plans and kinds were made with


def _caches_for(limits: Limits) -> None:
    """A name's kind depends on `max_name_length`: other limits (a reload) start the caches afresh."""
    if _planned_for and _planned_for[0] == limits:
        _planned_for[0] = limits
        return
    _PLANS.clear()
    _KINDS.clear()
    _planned_for[:] = [limits]


def plan(props: Mapping[Any, Any], limits: Limits) -> Plan:
    """The plan of `props`' key set (cached: an SDK sends the same few key sets, so the per-key decisions,
    prefix tests and name checks run once per set, not once per event: ~7 µs an event less on the
    posthog-js batch of bench/posthog.py)."""
    if not _planned_for or _planned_for[0] is not limits:
        _caches_for(limits)
    shape = tuple(props)
    found = _PLANS.get(shape)
    if found is None:
        present = set(shape)
        lifted = _lifted(shape, limits)
        found = Plan(tuple(key for key in shape if not (key.__class__ is str and key[:1] == "$")
                           and key not in _NOT_PLAIN),
                     lifted, tuple(pair for pair in MAPPED if pair[0] in present),
                     len(lifted) > MAX_DOLLAR_PROPERTIES)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[shape] = found
    return found


def lift_dollar(props: Mapping[str, Any], limits: Limits, planned: Plan | None = None) -> tuple[dict[str, Any], int]:
    """The `$`-properties a stored event keeps, and how many were dropped (past the cap, a name that is
    not a property name, a value outside the event limits). Never raises. On the ingest hot path: the
    plan of which keys to read is cached by the event's key set (`plan`), the common values (short
    strings, numbers, booleans) checked inline."""
    if planned is None:
        planned = plan(props, limits)
    kept: dict[str, Any] = {}
    dropped = 0
    longest = limits.max_string_length
    capped = planned.capped
    for key, kind in planned.lifted:
        value = props[key]
        if value is None:
            continue
        if kind < 0 or (capped and len(kept) >= MAX_DOLLAR_PROPERTIES):
            dropped += 1
            continue
        cls = value.__class__
        if cls is str:
            if kind == _URL:
                value = strip_query(value)
            elif kind == _CHAIN:
                value = _bounded_chain(value, longest)
            if len(value) > longest:
                dropped += 1
                continue
        elif cls is int:
            if not -_BIG < value < _BIG:
                dropped += 1
                continue
        elif cls is not bool:
            try:
                check_generic(value, 0, limits)
            except FieldError:
                dropped += 1
                continue
        kept[key] = value
    return kept, dropped


# --- bounded values for labels ---------------------------------------------------------------------

def path_template(page: Any) -> str:
    """A page (URL or path) -> its template: no origin, query or fragment; numbers, UUIDs, hex ids and
    long id-like tokens -> `:id` (`https://app.test/users/42/edit?x=1` -> `/users/:id/edit`)."""
    if type(page) is not str or not page:
        return "unknown"
    path = _QUERY.sub("", _ORIGIN.sub("", page.strip())) or "/"
    if "@" in path or "%40" in path:            # an e-mail address in a path is a person, not a page
        path = "/".join(":id" if "@" in part or "%40" in part else part for part in path.split("/"))
    parts = [":id" if _ID_SEGMENT.fullmatch(part) else part for part in path.split("/")]
    template = "/".join(parts)
    if not template.startswith("/"):
        template = "/" + template
    return template[:PATH_MAX]


def page_path(props: Mapping[str, Any]) -> str:
    """The template of the page an event happened on: `$pathname`, else `$current_url`."""
    page = props.get("$pathname")
    return path_template(page if type(page) is str and page else props.get("$current_url"))


def previous_page_path(props: Mapping[str, Any]) -> str:
    """The template of the page whose time `$prev_pageview_duration` measures: `$prev_pageview_pathname`;
    a `$pageleave` without it left the page it happened on."""
    page = props.get("$prev_pageview_pathname")
    return path_template(page) if type(page) is str and page else page_path(props)


def element_tag(props: Mapping[str, Any]) -> str:
    """The clicked element's tag: `$elements[0].tag_name`, else the first element of `$elements_chain`
    (`button.primary:attr__id="buy"...`); a tag outside TAGS is `other`."""
    tag: Any = None
    elements = props.get("$elements")
    if type(elements) is list and elements and type(elements[0]) is dict:
        tag = elements[0].get("tag_name")
    if tag is None:
        chain = props.get("$elements_chain")
        if type(chain) is str and chain:
            head = chain.split(";", 1)[0]
            match = _TAG.match(head)
            tag = match.group(0) if match else None
    if type(tag) is not str or not tag:
        return "unknown"
    tag = tag.lower()
    return tag if tag in TAGS else "other"


def event_type(props: Mapping[str, Any]) -> str:
    """autocapture's `$event_type` (click, submit, change, ...) from a closed set."""
    kind = props.get("$event_type")
    if type(kind) is not str:
        return "unknown"
    return kind if kind in EVENT_TYPES else "other"
