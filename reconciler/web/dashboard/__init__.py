"""The dashboard: server-rendered pages (Jinja2 templates in templates/, a little plain
JavaScript and CSS in static/, no build step, nothing from the network)."""
