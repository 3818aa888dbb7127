"""The web API and dashboard: a REST API under /api/v1 and server-rendered pages at /, on the
daemon's address and on `reconcile server` (reconciler/web/server.py).

    app.py         the Starlette app: /api/v1 (api/), / (dashboard/), static files
    auth.py        bearer tokens (read-only, admin), the dashboard's cookie, CSRF
    service.py     reads and actions over the store, shared by the API and the pages;
                   every action is written to the store's audit log
    run_requests   a run asked for through the web, checked before anything is written
"""
