"""The registry's HTTP API.

`create_app(settings)` in `app.py` builds it; nothing is opened at import.
Routes live in `routes/`: `edge.py` for the in-store boxes (bearer token),
`session.py`, `alerts.py`, `registrations.py`, `watchlist.py`, `audit.py` for
people (session cookie, roles per route), `pages.py` for the tablet pages.
`deps.py` holds the dependencies every route reads as a contract
(`ContextDep`, `EngineDep`, `NowDep`, `CurrentDevice`, `CurrentUser`,
`require_roles(...)`); `sessions.py` logins, sessions, lockout and CSRF;
`uploads.py` photo checks; `errors.py` turns typed registry failures into
short 4xx answers and anything unexpected into a bare 500.
Every route must name who may call it (deny by default, see `deps.GUARDS`).
"""
