"""Running untrusted code: one runner per isolation level, one entry per language.

base.py        Program, Limits, Outcome, Isolation and the Runner protocol
process.py     one command in its own process group: wall clock, output cap
bubblewrap.py  bwrap: read-only root, own directory, no network, own pids
rlimits.py     the fallback: rlimits and a process group (weaker, reported)
languages.py   command templates per language (python, node, bash, ...)
cache.py       results in SQLite, keyed by program, limits and isolation
pool.py        a worker pool sized to the cores; picks the runner
"""
