"""The documentation's analytics API over the event store: the admin dashboard
(/api/analytics/dashboard) and the business metrics (/api/monitoring/business-metrics).

timerange.py  the `from` / `to` / `range` query parameters -> a half-open interval [start, end)
queries.py    the SQL (one text for SQLite and PostgreSQL) and the fetches that run it
stats.py      rates, averages and nearest-rank percentiles over what the queries return
dashboard.py  the dashboard document, business.py the business-metrics document
"""
