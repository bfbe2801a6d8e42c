"""Tests for the systemd unit files: verification, exposure, and the seccomp rules.

PID 1 on a build machine is rarely systemd, so the seccomp part of the service
sandbox (``MemoryDenyWriteExecute=`` and ``SystemCallFilter=``) is rebuilt
here as the same kernel filter and the daemon's imports run under it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reelwatch

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
CHECK_UNITS = REPO / "systemd" / "check-units.sh"
SERVICE = REPO / "systemd" / "reelwatch.service"
SYSCALL_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package: systemd)",
)


@needs_systemd_analyze
def test_check_units_passes_with_low_exposure() -> None:
    result = subprocess.run(
        [str(CHECK_UNITS)], capture_output=True, text=True, timeout=60, check=False
    )
    scores = dict(re.findall(r"^exposure (\S+) ([0-9.]+)$", result.stdout, re.M))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert set(scores) == {"reelwatch.service"}
    assert float(scores["reelwatch.service"]) <= 1.0


def unit_settings(path: Path, key: str) -> list[str]:
    prefix = key + "="
    return [
        line[len(prefix) :]
        for line in path.read_text().splitlines()
        if line.startswith(prefix)
    ]


def test_service_sandbox_settings_present() -> None:
    """The settings the seccomp test below emulates are the ones in the unit."""
    assert unit_settings(SERVICE, "MemoryDenyWriteExecute") == ["yes"]
    assert unit_settings(SERVICE, "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]
    assert unit_settings(SERVICE, "SystemCallErrorNumber") == ["EPERM"]
    assert unit_settings(SERVICE, "RestrictAddressFamilies") == ["AF_UNIX"]


def expand_syscall_group(
    groups: dict[str, list[str]], name: str, seen: set[str] | None = None
) -> set[str]:
    seen = set() if seen is None else seen
    calls: set[str] = set()
    for entry in groups[name]:
        if entry.startswith("@"):
            if entry not in seen:
                seen.add(entry)
                calls |= expand_syscall_group(groups, entry, seen)
        else:
            calls.add(entry)
    return calls


def allowed_syscall_numbers() -> list[int]:
    """Return the x86-64 numbers of @system-service minus @privileged and @resources,
    using systemd-analyze's own group lists.
    """
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    groups: dict[str, list[str]] = {}
    current = ""
    for line in listing.splitlines():
        entry = line.strip()
        if line.startswith("@"):
            current = entry
            groups[current] = []
        elif current and entry and not entry.startswith("#"):
            groups[current].append(entry)
    allowed = expand_syscall_group(groups, "@system-service") - (
        expand_syscall_group(groups, "@privileged")
        | expand_syscall_group(groups, "@resources")
    )
    numbers = dict(
        (name, int(number))
        for name, number in re.findall(
            r"#define __NR_(\w+) (\d+)", SYSCALL_HEADER.read_text()
        )
    )
    return sorted(numbers[name] for name in allowed if name in numbers)


# Installs a seccomp filter with the rules systemd 252 builds for
# MemoryDenyWriteExecute=yes (x86-64: mmap with PROT_WRITE|PROT_EXEC, mprotect
# and pkey_mprotect adding PROT_EXEC, shmat with SHM_EXEC) and for the
# SystemCallFilter= allow list, failing the rest with EPERM, then execs the
# workload. The filter survives execve because no_new_privs is set first.
_SANDBOX = r"""
import ctypes, json, os, struct, sys

allowed = json.loads(sys.argv[1])
EPERM = 0x00050000 | 1       # SECCOMP_RET_ERRNO | EPERM
ALLOW = 0x7FFF0000           # SECCOMP_RET_ALLOW
LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
prog = []
def op(code, k=0, jt=0, jf=0):
    prog.append(struct.pack("HBBI", code, jt, jf, k))
def deny_if_arg2_has(nr, mask, exact):
    # When the syscall is nr: EPERM if args[2] & mask == mask (exact) or != 0.
    test = [(0x54, mask, 0, 0), (JEQ, mask, 0, 1)] if exact else [(JSET, mask, 0, 1)]
    body = [(LD, 32, 0, 0), *test, (RET, EPERM, 0, 0), (LD, 0, 0, 0)]
    op(JEQ, nr, 0, len(body))
    for code, k, jt, jf in body:
        op(code, k, jt, jf)
op(LD, 0)                            # A = syscall number
deny_if_arg2_has(9, 0x6, True)       # mmap, PROT_WRITE|PROT_EXEC
deny_if_arg2_has(10, 0x4, False)     # mprotect, PROT_EXEC
deny_if_arg2_has(329, 0x4, False)    # pkey_mprotect, PROT_EXEC
deny_if_arg2_has(30, 0o100000, False)  # shmat, SHM_EXEC
for nr in allowed:
    op(JEQ, nr, 0, 1)
    op(RET, ALLOW)
op(RET, EPERM)

code = b"".join(prog)
buf = ctypes.create_string_buffer(code)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:                     # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:   # PR_SET_SECCOMP, FILTER
    sys.exit(f"prctl(PR_SET_SECCOMP) failed: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], *sys.argv[3:]])
"""

# The daemon's imports and a little of what each does at run time. Prints one
# JSON object: a result ("ok" or the error) for each step.
_WORKLOAD = r"""
import importlib, json, mmap, os, pkgutil, sys, tempfile
results = {}
def step(name, fn):
    try:
        fn()
        results[name] = "ok"
    except BaseException as exc:
        results[name] = f"{type(exc).__name__}: {exc}"

for module in ["anyio", "msgspec", "aiosqlite", "sqlite3", "structlog",
               "watchfiles", "ctypes"]:
    step("import " + module, lambda m=module: importlib.import_module(m))

import reelwatch
for info in pkgutil.walk_packages(reelwatch.__path__, "reelwatch."):
    if info.name != "reelwatch.__main__":
        step("import " + info.name, lambda n=info.name: importlib.import_module(n))

def run_loop():
    import anyio, aiosqlite, msgspec, watchfiles
    from reelwatch.logs import configure_logging
    configure_logging("info", "json", stream=open(os.devnull, "w"))
    async def main():
        with tempfile.TemporaryDirectory(dir=sys.argv[1]) as tmp:
            async with aiosqlite.connect(os.path.join(tmp, "catalog.db")) as db:
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("CREATE TABLE v (path TEXT)")
                await db.execute("INSERT INTO v VALUES (?)", ("/a.mkv",))
                await db.commit()
            assert msgspec.json.decode(msgspec.json.encode({"a": 1})) == {"a": 1}
            stop = anyio.Event()
            async def touch():
                await anyio.sleep(0.3)
                open(os.path.join(tmp, "new.mkv"), "wb").close()
            async with anyio.create_task_group() as tg:
                tg.start_soon(touch)
                with anyio.fail_after(20):
                    async for _ in watchfiles.awatch(tmp, stop_event=stop):
                        break
    anyio.run(main)
step("event loop, sqlite, watchfiles", run_loop)

def callback():
    import ctypes
    add = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert add(1) == 2
step("ctypes callback", callback)

def writable_executable_mapping():
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
step("control: W|X mapping", writable_executable_mapping)
step("control: setuid", lambda: os.setuid(os.getuid()))
print(json.dumps(results))
"""


@needs_systemd_analyze
@pytest.mark.skipif(
    platform.machine() != "x86_64" or not SYSCALL_HEADER.exists(),
    reason="the filter is built from x86-64 syscall numbers in asm/unistd_64.h "
    "(Debian package: linux-libc-dev)",
)
def test_daemon_runs_under_unit_seccomp_rules(tmp_path: Path) -> None:
    """Every step that works unsandboxed also works under the unit's seccomp rules.

    1. Run the workload without a filter, as the reference.
    2. Run it again under the MemoryDenyWriteExecute= and SystemCallFilter=
       rules of reelwatch.service.
    3. The two results match, except for two controls that must fail only
       under the filter: a writable and executable mapping, and setuid().
    """
    env = dict(os.environ)
    package_root = str(Path(reelwatch.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [package_root, env.get("PYTHONPATH")])
    )
    allowed = json.dumps(allowed_syscall_numbers())

    reference = subprocess.run(
        [sys.executable, "-c", _WORKLOAD, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    sandboxed = subprocess.run(
        [sys.executable, "-c", _SANDBOX, allowed, _WORKLOAD, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    assert sandboxed.returncode == 0, sandboxed.stderr
    expected = json.loads(reference.stdout)
    actual = json.loads(sandboxed.stdout)

    assert actual.pop("control: W|X mapping").startswith("PermissionError")
    assert actual.pop("control: setuid").startswith("PermissionError")
    assert expected.pop("control: W|X mapping") == "ok"
    assert expected.pop("control: setuid") == "ok"
    assert actual == expected
    assert actual["event loop, sqlite, watchfiles"] == "ok"
