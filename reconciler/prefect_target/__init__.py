"""A real Prefect server (or Prefect Cloud) as the target of a plan: `--store prefect+http://...`.

`client` talks to Prefect's REST API (httpx), `mapping` turns our specs into Prefect's bodies and
Prefect's objects back into our specs, `reader` observes what the server holds, `applier`
executes a plan in a safe order, and `target` ties them together for the engine."""
