"""reconciler: make git the source of truth for Prefect-style deployments.

Pipeline: load -> validate -> desired state -> plan -> apply. Everything before `apply` is
pure; `reconciler.apply.transaction` is the only writer to the store.
"""

__version__ = "0.1.0"
