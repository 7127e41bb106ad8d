"""Command-line shell of batchline: the `batchline` CLI and its local launch helpers."""
