"""The `errors:` block: the size limits of error events and the series limit of loom_errors_total."""

from __future__ import annotations

from dataclasses import dataclass

from agent.config.node import Node


@dataclass(frozen=True, slots=True)
class ErrorsConfig:
    max_frames: int = 100              # longer stacks keep their first and last frames (framesOmitted)
    max_message_length: int = 8192     # longer messages are cut (messageTruncated)
    max_body_bytes: int = 1024 * 1024  # larger bodies: 413
    max_batch: int = 100               # errors per batch request
    series_limit: int = 2000           # series of loom_errors_total; new ones past it fold to "other"


def parse_errors(node: Node) -> ErrorsConfig:
    base = ErrorsConfig()
    config = ErrorsConfig(
        max_frames=node.int("max_frames", base.max_frames, minimum=2, maximum=10_000),
        max_message_length=node.int("max_message_length", base.max_message_length, minimum=16, maximum=1_000_000),
        max_body_bytes=node.int("max_body_bytes", base.max_body_bytes, minimum=1024, maximum=256 * 1024 * 1024),
        max_batch=node.int("max_batch", base.max_batch, minimum=1, maximum=10_000),
        series_limit=node.int("series_limit", base.series_limit, minimum=1, maximum=1_000_000),
    )
    node.finish()
    return config
