"""The composition root: builds every component of the running agent once, wires them together and
hands them to the route modules (agent/api). Nothing else builds components.

May import every package of agent/. Nothing imports it but agent/__main__.py and the tests.
"""
