"""The HTTP edge: one module per group of routes. Handlers parse, authenticate and hand typed objects
over; they build no component (agent/app does) and write no error response by hand (they raise; one
middleware answers). Application state is read through the keys of agent/api/keys.py.

May import: agent.api.keys, the packages of the data flow (events, error_tracking, custom_metrics,
store, analytics, rules, status, collectors, config). Never agent.app.
"""
