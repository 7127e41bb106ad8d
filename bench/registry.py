"""Scenarios and submitters are named by "module:function" strings, resolved late.

Late resolution lets the harness run before a scenario module exists (as long
as it is not selected) and lets scenario modules register themselves without
import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises:
        ValueError: ``target`` has no ``:``.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not attribute:
        raise ValueError(f"expected 'module:function', got {target!r}")
    return getattr(importlib.import_module(module_name), attribute)
