"""GET /api/experiments/{experimentId} (admin token): an A/B test's exposures, conversions and the
95% interval of each variant's difference to the control (agent/analytics/experiments.py says how).

Parameters: the time range of the analytics API (from / to / range, default the last 30 days);
`conversion` (an event name: any such event after the exposure converts; default campaign_conversion
events carrying the experiment's id); `control` (the variant to compare with). The checks run in the
analytics API's order: the admin token (401/403), the parameters (400 naming the parameter), the store
(503, with Retry-After while it fails).

An experiment of `flags.experiments` (run with a PostHog feature flag) is read from the flag's
`$feature_flag_called` exposures and its goal instead, with the probability that each variant is best
and the sample-ratio-mismatch check (agent/analytics/experiments.py flag_experiment); its goal and
control come from the config, so `conversion` and `control` are refused for it.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from agent.analytics.experiments import experiment, flag_experiment
from agent.analytics.timerange import PARAMETERS, RangeError, parse_time_range, values
from agent.api.analytics import answer_from_store, refuse_unknown_parameters
from agent.api.auth import require_admin
from agent.api.keys import FLAGS
from agent.api.problems import BadRequest
from agent.events.posthog import POSTHOG_NAME

KNOWN = (*PARAMETERS, "conversion", "control")
NAME_MAX = 128            # an event name (events.max_name_length's default)
ID_MAX = 256              # the catalog's experiment_id and variant_id


def _one(query: Any, name: str, longest: int) -> str | None:
    """The single value of parameter `name` (1 to `longest` characters), or None; raises RangeError."""
    given = values(query, name)
    if len(given) > 1:
        raise RangeError(name, "given more than once")
    if not given:
        return None
    if not 1 <= len(given[0]) <= longest:
        raise RangeError(name, f"must be 1 to {longest} characters")
    return given[0]


async def get_experiment(request: web.Request) -> web.Response:
    require_admin(request)
    experiment_id = request.match_info["experimentId"]
    if len(experiment_id) > ID_MAX:
        raise BadRequest.field("experimentId", f"must be 1 to {ID_MAX} characters")
    refuse_unknown_parameters(request.query, KNOWN)
    time_range = parse_time_range(request.query, time.time())        # RangeError: a 400 naming it
    conversion = _one(request.query, "conversion", NAME_MAX)
    control = _one(request.query, "control", ID_MAX)
    if conversion is not None and not POSTHOG_NAME.fullmatch(conversion):
        raise RangeError("conversion", "must be an event name (letters, digits, _ . : $ - and spaces, "
                                       "starting with a letter or $)")
    definition = next((e for e in request.app[FLAGS].flags.config.experiments if e.id == experiment_id), None)
    if definition is not None:                        # run with a feature flag: flags.experiments says it all
        for name, given in (("conversion", conversion), ("control", control)):
            if given is not None:
                raise RangeError(name, f"is set by flags.experiments for the flag experiment {experiment_id}")
        return await answer_from_store(request, lambda store: flag_experiment(store, definition, time_range))
    return await answer_from_store(request, lambda store: experiment(store, experiment_id, time_range,
                                                                     conversion=conversion, control=control))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/experiments/{experimentId}", get_experiment)
