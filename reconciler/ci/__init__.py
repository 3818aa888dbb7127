"""Continuous-integration helpers: the pull-request comment of the plan (pr_comment.py)."""
