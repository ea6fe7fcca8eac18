"""The `posthog:` block: the PostHog endpoints (`/e/`, `/i/v0/e/`, `/capture/`, `/batch/`, `/track/`,
`/engage/`, `/i/v1/analytics/events`, `/array/{token}/config[.js]`), the browser origins allowed by CORS,
and what the remote config tells posthog-js to capture.

    posthog:
      enabled: true                 # false: every PostHog route answers 404
      allowed_origins: []           # browser pages allowed to send (https://app.example.com; "*": any, for
                                    # development); none: posthog-js in a browser is refused (403)
      skew_correction: true         # event time = receive time - sent_at + timestamp (docs/posthog.md)
      remote_config:                # what /array/{token}/config tells posthog-js
        autocapture: true           # false: autocapture_opt_out (clicks, submits, changes not captured)
        web_vitals: true            # capturePerformance.web_vitals
        network_timing: false       # capturePerformance.network_timing ($performance_event)
        exception_autocapture: false  # autocaptureExceptions ($exception on uncaught errors)
        session_recording: false    # sessionRecording {endpoint: "/s/"}; false: posthog-js records nothing
        console_log_recording: false  # sessionRecording.consoleLogRecordingEnabled

Every error names its YAML path (`posthog.allowed_origins[0]: ...`); unknown keys are errors. Every
setting applies from the next request on a reload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.config.node import Node
from agent.config.origins import origin_allowed, parse_origins


@dataclass(frozen=True, slots=True)
class RemoteConfigSettings:
    autocapture: bool = True
    web_vitals: bool = True
    network_timing: bool = False
    exception_autocapture: bool = False
    session_recording: bool = False
    console_log_recording: bool = False


@dataclass(frozen=True, slots=True)
class PosthogConfig:
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    skew_correction: bool = True
    remote_config: RemoteConfigSettings = RemoteConfigSettings()

    def origin_allowed(self, origin: str) -> bool:
        return origin_allowed(self.allowed_origins, origin)


def _remote_config(node: Node) -> RemoteConfigSettings:
    base = RemoteConfigSettings()
    settings = RemoteConfigSettings(**{name: node.bool(name, getattr(base, name))
                                       for name in RemoteConfigSettings.__dataclass_fields__})
    if settings.console_log_recording and not settings.session_recording:
        node.error("needs session_recording: true (console logs are recorded with the session)",
                   "console_log_recording")
    node.finish()
    return settings


def parse_posthog(node: Node) -> PosthogConfig:
    base = PosthogConfig()
    config = PosthogConfig(enabled=node.bool("enabled", base.enabled), allowed_origins=parse_origins(node),
                           skew_correction=node.bool("skew_correction", base.skew_correction),
                           remote_config=_remote_config(node.child("remote_config")))
    node.finish()
    return config


class PosthogSettings:
    """The running `posthog:` block, read by the routes on every request; reloadable."""

    def __init__(self, config: PosthogConfig):
        self.config = config

    def prepare(self, config: PosthogConfig) -> Callable[[], None]:
        """Reloadable: every `posthog:` setting applies from the next request."""
        return lambda: setattr(self, "config", config)
