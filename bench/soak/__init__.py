"""The chaos soak (`make soak`, issue 13): a daemon, 3 workers and their scheduler on one store
(PostgreSQL, then SQLite) while a driver commits, creates runs, kill -9s processes and takes
the store away; then the invariants are checked (docs/soak.md).

    project.py  the git repository the daemon watches, and the commits the driver makes
    fleet.py    the daemon and worker processes: start, kill -9, restart, stop, orphans
    outage.py   the store's outage: PostgreSQL stopped, or SQLite locked, for 10 s
    driver.py   the chaos: commits, runs, kills and the outage, for a bounded time
    checks.py   the invariants, read from the store, the flows' marks and /proc
    __main__.py the command line: one soak per backend, figures, exit status
"""
