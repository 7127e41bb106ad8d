"""Fixtures of the end-to-end tests (the session's servers come from tests/conftest.py)."""

from tests.support_browser import chromium

__all__ = ["chromium"]
