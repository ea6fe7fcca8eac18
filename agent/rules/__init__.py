"""Alerting: the thresholds (one place), the Prometheus rules rendered from them, the detectors."""
