"""Deployment schedules into scheduled flow runs: fire times (pure) and the scheduler tick."""
