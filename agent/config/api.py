"""The `api:` block: who may call the admin API (analytics, GDPR, anomalies) and how often."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agent.config.node import Node

ENV_ADMIN_TOKENS = "LOOM_AGENT_ADMIN_TOKENS"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    admin_tokens: tuple[str, ...] = ()      # bearer tokens of the admin API; none: every admin call is refused
    rate_limit: int = 100                   # requests per minute per client on /api/monitoring/business-metrics


def parse_api(node: Node, environ: Mapping[str, str] = os.environ) -> ApiConfig:
    base = ApiConfig()
    config = ApiConfig(admin_tokens=node.secret_list("admin_tokens", ENV_ADMIN_TOKENS, environ),
                       rate_limit=node.int("rate_limit", base.rate_limit, minimum=1, maximum=1_000_000))
    node.finish()
    return config
