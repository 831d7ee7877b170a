"""`scripts/bench`: cdc-logs measured as users run it, next to the tools it is compared with, in one run.

Modules: stats (percentiles, the open-loop schedule, rates: pure), report (results, targets, the JSON
and Markdown renderings, the chart), cleanup (everything a run creates is removed, on failure and
Ctrl-C too), stack (Postgres, MariaDB, Kafka, Kafka Connect helpers), proc (`cdc-logs run` as a
subprocess: config, logs, RSS), loadgen (the open-loop load generator, run as its own process), and
the cases: throughput.py, latency.py, footprint.py (idle RSS, tail's first event, the big transaction),
mysql.py. `python -m benchkit` (scripts/bench) runs them; see docs/benchmarks.md.
"""
