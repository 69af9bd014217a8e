"""Web dashboard: server-rendered page shells plus static ES modules that call /api/v1/."""
