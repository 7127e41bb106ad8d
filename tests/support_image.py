"""What ``docker build -f deploy/Dockerfile .`` would see and run, without a Docker engine.

Shared by tests/unit/test_deploy_files.py (the Dockerfile runs these commands, every
package survives .dockerignore) and tests/e2e/test_wheel_install.py (which runs them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The wheel build of the Dockerfile's first stage (run from the build context).
WHEEL_BUILD = ["python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
#: The install of its second stage: ``WHEEL_INSTALL + [VENV_PYTHON, LOCK, WHEEL]``.
WHEEL_INSTALL = ["sh", "deploy/install.sh"]
IMAGE_LOCK = "requirements.lock"

Rule = tuple[bool, re.Pattern[str]]


def dockerignore_rules(repo: Path = REPO) -> list[Rule]:
    """``(excludes, regex)`` for each line of ``.dockerignore``, in order (the last match wins).

    Supports what Docker's matcher does that this repository uses: ``*``, ``?``, ``**``,
    ``!`` exceptions and patterns anchored at the context root.
    """
    rules = []
    for raw in (repo / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        # A rule naming a directory covers everything below it.
        rules.append((not negated, re.compile(f"{regex}(?:/.*)?")))
    return rules


def is_in_build_context(relative: str, rules: list[Rule]) -> bool:
    """Whether Docker sends ``relative`` (a path below the context root) to the build."""
    included = True
    for excludes, regex in rules:
        if regex.fullmatch(relative):
            included = not excludes
    return included


def build_context_files(repo: Path = REPO) -> list[str]:
    """Every file of ``repo`` that ``COPY . .`` copies after ``.dockerignore``."""
    rules = dockerignore_rules(repo)
    prune = not any(not excludes for excludes, _ in rules)  # no exceptions: skip whole dirs
    found = []
    for root, directories, files in os.walk(repo):
        base = Path(root).relative_to(repo)
        if prune:
            directories[:] = [
                d for d in directories if is_in_build_context((base / d).as_posix(), rules)
            ]
        found += [
            path for name in files if is_in_build_context(path := (base / name).as_posix(), rules)
        ]
    return sorted(found)


def copy_build_context(destination: Path, repo: Path = REPO) -> Path:
    """Copy what ``COPY . .`` would copy into ``destination``; return it."""
    for relative in build_context_files(repo):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / relative, target, follow_symlinks=False)
    return destination
