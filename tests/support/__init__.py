"""Helpers shared by the tests (not tests themselves): the real agent app and its server fixture for API
tests (agent_app.py), real processes (procs.py: the agent, Prometheus; pg.py: PostgreSQL;
alerting_procs.py: Alertmanager and amtool), the store fixtures on both databases (store_fixtures.py),
fake peers (otlp_receiver.py, dns_server.py, loopback.py, certs.py), and fixtures and checks of the
analytics, status page, dashboards, stack files and durability load."""
