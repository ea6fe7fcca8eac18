"""`loom-agent demo`: demo probe targets (targets.py), realistic event traffic (traffic.py, events.py,
extras.py), the sender (sender.py) and the command (cli.py)."""
