"""The HTTP API (``batchline api``): a thin FastAPI shell over the Python API, like ``cli/``."""
