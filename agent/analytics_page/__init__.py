"""The admin analytics page (GET /analytics, /analytics/insights): server-rendered HTML with inline SVG
charts, no script and no external asset; the routes and the sign-in are agent/api/analytics_page.py."""
