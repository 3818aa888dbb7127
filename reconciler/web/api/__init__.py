"""The REST API under /api/v1: routes.py (the endpoints), bodies.py (request bodies, read
within limits and checked against the JSON schemas that openapi.py publishes)."""
