"""The daemon's fixture (a `reconcile daemon` process and its /status), for the daemon test."""

from tests.daemon.conftest import start_daemon as start_daemon

__all__ = ["start_daemon"]
