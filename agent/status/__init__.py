"""The status page at `/` and its JSON twin `/api/status`.

history.py   what /metrics does not keep: recent failures with their details, counts since start
uptime.py    the 24-hour uptime from the store's probe_rollups, cached so `/` never waits on SQL
model.py     the page's data, built from the runtime, the history, the uptime and the anomaly monitor
page.py      that data as one HTML document with inline CSS (no script, no external asset)
"""
