"""Build, push and pull steps: the step runner and the steps reconciler implements natively.

Steps run during apply, after the plan was made, and never during a dry-run: planning only
checks step names (reconciler/steps/spec.py). `runner.run_steps` runs a list of steps with
Prefect's semantics; the modules beside it are the steps themselves.
"""
