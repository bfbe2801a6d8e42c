"""Floor programs: the least work any indexer must do, measured on the same tree.

``read_tree`` lists a tree with ``os.scandir`` and reads the first and the
last 64 KiB of every file, one folder per task on a thread pool; the reads
release the GIL. ``find_stat`` times ``find -printf`` with a stat of every
file, the usual way to check a tree for changes from a shell.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["find_stat", "read_tree"]

_BLOCK = 64 * 1024


def read_tree(root: Path, *, threads: int | None = None) -> tuple[int, float]:
    """Read the head and tail of every file under ``root``.

    Returns the number of files and the seconds it took.
    """
    workers = threads or 2 * (os.cpu_count() or 1)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        files = _read_folder(str(root), pool)
    return files, time.perf_counter() - started


def _read_folder(folder: str, pool: ThreadPoolExecutor) -> int:
    # The top levels fan out to the pool; each folder task reads its own files.
    pending = [pool.submit(_scan_one, folder)]
    files = 0
    while pending:
        count, subfolders = pending.pop().result()
        files += count
        pending.extend(pool.submit(_scan_one, sub) for sub in subfolders)
    return files


def _scan_one(folder: str) -> tuple[int, list[str]]:
    files = 0
    subfolders = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                _read_head_and_tail(entry.path)
                files += 1
    return files, subfolders


def _read_head_and_tail(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        os.pread(fd, _BLOCK, 0)
        if size > _BLOCK:
            os.pread(fd, _BLOCK, max(_BLOCK, size - _BLOCK))
    finally:
        os.close(fd)


def find_stat(root: Path) -> tuple[int, float]:
    """Run ``find ROOT -printf '%s %T@ %i\\n'``; return the lines and the seconds.

    Raises:
        subprocess.CalledProcessError: find failed.
    """
    started = time.perf_counter()
    output = subprocess.run(
        ["find", str(root), "-printf", r"%s %T@ %i\n"],
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    return output.count(b"\n"), time.perf_counter() - started
