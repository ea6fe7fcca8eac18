"""Probe kinds and the machinery that runs them.

One module per kind (http, tcp, dns, tls, websocket), each with KIND, Options, parse_options() and
Collector, on the plumbing they share in `base.py` (the result contract, the failure exception, the
phase trace, the resolver). `kinds.py` is the typed registry the rest of the agent reaches them through;
`scheduler.py` runs them, `runtime.py` holds their running state, `spans.py` turns results into spans.

May import: agent.config, agent.metrics (runtime.py). Kind modules never import `kinds.py`.
"""
