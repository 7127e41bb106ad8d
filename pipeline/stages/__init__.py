"""The four pure stage handlers: preflight, writing, QC and delivery rendering.

Each handler takes an :class:`~pipeline.manifest.OrderDocument` plus the stored
output of the stage before it and returns a JSON-ready ``dict`` to store as this
stage's output. A handler that decides the order cannot go on raises a
:class:`~pipeline.errors.BatchlineError` subclass (its ``details`` are stored too).
Handlers do no I/O except where noted (the publisher in ``pipeline.publishing``).
"""
