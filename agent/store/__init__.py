"""The durable event store: SQLite (default, embedded) or PostgreSQL (shared by several agents)."""
