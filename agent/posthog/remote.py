"""posthog-js's remote config, `GET /array/{token}/config` (JSON) and `/array/{token}/config.js` (a script
that sets `window._POSTHOG_REMOTE_CONFIG[token]`), built from the `posthog:` block.

posthog-js reads it at start-up (lib/src/remote-config.js): `autocapture_opt_out`, `capturePerformance`
(`web_vitals`, `network_timing`), `autocaptureExceptions` / `errorTracking`, `sessionRecording` (false, or
where to send recordings: `/s/` on the agent), `supportedCompression` (gzip bodies), `hasFeatureFlags`
(true when the `flags:` block defines flags and serves them: posthog-js then asks `/flags/` at start-up;
false, and it does not), and turns off what the agent does not serve (surveys, heatmaps, site apps, dead
clicks).
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.posthog.config import PosthogConfig

SUPPORTED_COMPRESSION = ("gzip", "gzip-js")
RECORDINGS_ENDPOINT = "/s/"
ANALYTICS_ENDPOINT = "/i/v0/e/"


def remote_config(config: PosthogConfig, token: str, has_feature_flags: bool = False) -> dict[str, Any]:
    """The config object of a project token (the token is echoed, as PostHog does)."""
    settings = config.remote_config
    recording: Any = False
    if settings.session_recording:
        recording = {"endpoint": RECORDINGS_ENDPOINT, "consoleLogRecordingEnabled": settings.console_log_recording,
                     "recorderVersion": "v2", "sampleRate": None, "minimumDurationMilliseconds": None,
                     "linkedFlag": None, "networkPayloadCapture": None, "urlTriggers": [], "urlBlocklist": [],
                     "eventTriggers": [], "scriptConfig": None}
    performance: Any = False
    if settings.web_vitals or settings.network_timing:
        performance = {"network_timing": settings.network_timing, "web_vitals": settings.web_vitals,
                       "web_vitals_allowed_metrics": None}
    return {
        "token": token,
        "supportedCompression": list(SUPPORTED_COMPRESSION),
        "hasFeatureFlags": has_feature_flags,
        "captureDeadClicks": False,
        "capturePerformance": performance,
        "autocapture_opt_out": not settings.autocapture,
        "autocaptureExceptions": settings.exception_autocapture,
        "errorTracking": {"autocaptureExceptions": settings.exception_autocapture, "suppressionRules": []},
        "analytics": {"endpoint": ANALYTICS_ENDPOINT},
        "elementsChainAsString": True,
        "sessionRecording": recording,
        "heatmaps": False,
        "surveys": False,
        "productTours": False,
        "defaultIdentifiedOnly": True,
    }


def remote_config_js(config: PosthogConfig, token: str, has_feature_flags: bool = False) -> str:
    """The script form: the same object under window._POSTHOG_REMOTE_CONFIG[token], no site apps. The
    token is written as a JSON string (never as code)."""
    key = orjson.dumps(token).decode()
    body = orjson.dumps(remote_config(config, token, has_feature_flags)).decode()
    return ("(function() {\n  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
            f"  window._POSTHOG_REMOTE_CONFIG[{key}] = {{config: {body}, siteApps: []}};\n}})();\n")
