"""Checks that a scan root is still the folder the configuration named.

The roots are resolved with realpath when the configuration is loaded. A root
replaced later by a symlink (``mv media media.keep; ln -s /elsewhere media``),
or reached through a parent folder replaced by one, would lead walks, watches
and probes to a folder outside every allowed root. Such a root is refused
until the configured folder is back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

import structlog

__all__ = ["RootIdentities", "root_problem"]

log = structlog.get_logger(__name__)


def root_problem(root: str) -> str | None:
    """Return why ``root`` no longer leads to the configured folder, or None.

    A root that does not exist, or is a file, is not a problem here: the
    callers report it ``missing``.
    """
    try:
        info = os.lstat(root)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"cannot check the root {root}: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return (
            f"the root {root} is now a symlink to {os.path.realpath(root)}, outside "
            "the configured folder; its entries are kept offline until the folder "
            "itself is back at that path"
        )
    real = os.path.realpath(root)
    if real != root:
        return (
            f"the root {root} now leads to {real} because a parent folder was "
            "replaced by a symlink; its entries are kept offline until the "
            "configured folder is back"
        )
    return None


class RootIdentities:
    """The device and inode of each root, recorded the first time it is checked."""

    def __init__(self) -> None:
        self._recorded: dict[str, tuple[int, int]] = {}

    def check(self, root: str) -> str | None:
        """Return :func:`root_problem` for ``root``; log a root replaced by a folder.

        A different device and inode at the same real path is logged but
        accepted: a drive mounted again, or a folder deleted and made again,
        is still the folder the configuration names, and it cannot lead
        outside the roots.
        """
        problem = root_problem(root)
        if problem is not None:
            return problem
        try:
            info = os.stat(root)
        except OSError:
            return None  # missing: the callers report it
        identity = (info.st_dev, info.st_ino)
        recorded = self._recorded.setdefault(root, identity)
        if recorded != identity:
            log.warning(
                "root_identity_changed",
                root=root,
                device=info.st_dev,
                inode=info.st_ino,
                recorded_device=recorded[0],
                recorded_inode=recorded[1],
            )
            self._recorded[root] = identity
        return None

    def problems(self, roots: Iterable[str]) -> dict[str, str]:
        """Return the problem of each root that has one."""
        found = {}
        for root in roots:
            problem = self.check(root)
            if problem is not None:
                found[root] = problem
        return found
