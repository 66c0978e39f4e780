"""The registry's HTTP API.

`create_app(settings)` in `app.py` builds it; nothing is opened at import.
Routes live in `routes/` (one module per caller: `edge.py` for the in-store
boxes); `deps.py` holds the dependencies every route reads as a contract
(`ContextDep`, `CurrentDevice`); `errors.py` turns typed registry failures
into short 4xx answers and anything unexpected into a bare 500.
Every route must name who may call it (deny by default, see `deps.GUARDS`).
"""
