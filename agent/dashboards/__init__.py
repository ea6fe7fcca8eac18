"""Grafana dashboards, written in Python and rendered to grafana/dashboards/*.json (`python -m agent.dashboards`)."""
