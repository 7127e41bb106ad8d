"""Benchmarks of batchline against the naive Celery design (``make bench``).

The harness starts its own servers (or uses ``REDIS_URL`` / ``DATABASE_URL``),
runs each scenario with real worker processes, records one :class:`RunResult`
per run in a JSON file and renders ``docs/BENCHMARKS.md`` with a chart.

Modules: ``services`` (servers, database, environment), ``workers`` (worker
processes, RSS sampling, pause/resume), ``submit`` / ``submitter`` (publishing
in a child process), ``measure`` (Redis memory, percentiles, machine facts),
``results`` (the JSON file), ``registry`` ("module:function" names resolved
late), ``naive`` / ``baseline`` (scenarios A and B), ``report`` (the document)
and ``run`` (the command line).
"""
