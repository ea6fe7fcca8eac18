"""Helpers shared by the tests: the real agent app for API tests (agent_app.py)."""
