"""The stages' measuring code as it was before session 8's CPU work (commit 4284d88).

Verbatim copies of ``pipeline/stages/qc.py``, ``pipeline/similarity.py``,
``pipeline/readability.py`` and the offline writer's ``pipeline/stages/writing.py``;
only the imports between them point here instead (the HTML parser did not change, so it
is not copied: the copies use the current one). ``test_stage_outputs_unchanged``
compares the current code with these over many inputs, and ``bench.stage_cpu`` times
both in one process. Never edit them to follow a change: they are the outputs the
ledger already holds.
"""
