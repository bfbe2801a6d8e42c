"""Check that the architecture documents name what the code defines, and no more.

Each checked list sits under a fixed heading in a file of docs/architecture/:
a bullet list (``- `name` - what it is``) or a table whose first cell contains
the name in backticks. The list runs to the next heading of level one or two, so
``###`` subheadings may group it. Adding a module, a protocol method, a job
state or a configuration key to the code therefore means adding one line to
the matching list, and removing one means removing its line.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from reelwatch.config import Config
from reelwatch.models import JobState

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = REPO / "docs" / "architecture"
PACKAGE = REPO / "daemon" / "reelwatch"
CRATE_SOURCES = REPO / "core-rs" / "src"


@dataclass(frozen=True)
class NameList:
    """Where the documents list one kind of name."""

    kind: str
    document: str
    heading: str

    @property
    def where(self) -> str:
        return f"under '{self.heading}' in docs/architecture/{self.document}"


MODULES = NameList("module", "code.md", "## Modules")
PROTOCOL_METHODS = NameList("protocol method", "components.md", "## Protocol methods")
JOB_STATES = NameList("job state", "components.md", "## Job states")
CONFIG_KEYS = NameList("configuration key", "components.md", "## Configuration keys")

_HEADING = re.compile(r"^(#{1,6})\s")
_BULLET_NAME = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+`([^`]+)`")
_TABLE_NAME = re.compile(r"^\s*\|\s*`([^`]+)`")


def read_names(name_list: NameList) -> list[str]:
    """Return the names listed under the heading, in document order."""
    path = ARCHITECTURE / name_list.document
    if not path.is_file():
        pytest.fail(f"docs/architecture/{name_list.document} is missing")
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == name_list.heading]
    if len(starts) != 1:
        pytest.fail(
            f"docs/architecture/{name_list.document} must have exactly one "
            f"'{name_list.heading}' heading, found {len(starts)}"
        )

    names: list[str] = []
    in_code_block = False
    for line in lines[starts[0] + 1 :]:
        if line.lstrip().startswith("```"):
            in_code_block = not in_code_block
            continue
        if in_code_block:
            continue
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) <= 2:
            break
        match = _BULLET_NAME.match(line) or _TABLE_NAME.match(line)
        if match:
            names.append(match.group(1))
    return names


def check_names(name_list: NameList, in_code: set[str]) -> None:
    """Fail with one line per name that the code and the document disagree on."""
    listed = read_names(name_list)
    duplicates = sorted({name for name in listed if listed.count(name) > 1})
    assert not duplicates, "\n".join(
        f"{name_list.kind} {name} is listed twice {name_list.where}"
        for name in duplicates
    )

    undocumented = sorted(in_code - set(listed))
    assert not undocumented, "\n".join(
        f"{name_list.kind} {name} exists in the code but is not listed "
        f"{name_list.where}; add a line for it"
        for name in undocumented
    )

    stale = sorted(set(listed) - in_code)
    assert not stale, "\n".join(
        f"{name_list.kind} {name} is listed {name_list.where} but does not "
        "exist in the code; remove its line or fix its spelling"
        for name in stale
    )


def module_files() -> set[str]:
    """Every Python module and stub of the package, and every Rust source file."""
    python = [
        path
        for pattern in ("*.py", "*.pyi")
        for path in PACKAGE.rglob(pattern)
        if "__pycache__" not in path.parts
    ]
    rust = list(CRATE_SOURCES.rglob("*.rs"))
    return {path.relative_to(REPO).as_posix() for path in python + rust}


def dispatched_methods() -> set[str]:
    """The JSON-RPC method names the control server dispatches."""
    from reelwatch import server

    methods = getattr(server, "METHODS", None)
    if methods is None:
        pytest.fail(
            "reelwatch.server.METHODS, the dispatch table this test reads, is "
            "gone; point dispatched_methods() at where methods are registered now"
        )
    return set(methods)


def config_keys(struct_type: type[msgspec.Struct], prefix: str = "") -> set[str]:
    """Every leaf key of a configuration struct, dotted below sections."""
    keys: set[str] = set()
    for field in msgspec.structs.fields(struct_type):
        key = prefix + field.encode_name
        section = _struct_in(field.type)
        if section is None:
            keys.add(key)
        else:
            keys |= config_keys(section, key + ".")
    return keys


def _struct_in(annotation: object) -> type[msgspec.Struct] | None:
    # A section may be wrapped: `Section | None`, `Annotated[Section, ...]`,
    # or `list[Section]` for an array of tables.
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    for argument in typing.get_args(annotation):
        section = _struct_in(argument)
        if section is not None:
            return section
    return None


def test_modules_documented() -> None:
    check_names(MODULES, module_files())


def test_protocol_methods_documented() -> None:
    check_names(PROTOCOL_METHODS, dispatched_methods())


def test_job_states_documented() -> None:
    check_names(JOB_STATES, {state.value for state in JobState})


def test_configuration_keys_documented() -> None:
    check_names(CONFIG_KEYS, config_keys(Config))


# A repository path in backticks, without a `:line` suffix. A path with glob
# characters is a pattern rather than a file, so it does not match.
_SOURCE_PATH = re.compile(
    r"`((?:daemon|core-rs|config|systemd|docs|tests|benchmarks)/[^`\s:*?]+)(?::\d+)?`"
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def linked_paths(document: Path) -> list[str]:
    """Return the relative link targets of a Markdown file, without anchors."""
    targets = []
    for target in _LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_architecture_references_exist() -> None:
    """Every repository path and relative link in the documents points at a file."""
    missing = []
    for document in sorted(ARCHITECTURE.glob("*.md")):
        text = document.read_text(encoding="utf-8")
        for path in sorted(set(_SOURCE_PATH.findall(text))):
            if not (REPO / path).exists():
                missing.append(f"{document.name} names {path}, which does not exist")
        for target in linked_paths(document):
            if not (document.parent / target).exists():
                missing.append(
                    f"{document.name} links to {target}, which does not exist"
                )

    assert not missing, "\n".join(missing)


# The documents README.md must link to, by the name a reader looks for.
REQUIRED_DOCUMENTS = {
    "architecture": "docs/architecture/README.md",
    "protocol": "docs/protocol.md",
    "operations": "docs/operations.md",
    "security": "docs/security.md",
    "watching": "docs/watching.md",
    "accuracy": "docs/accuracy.md",
    "benchmarks": "docs/benchmarks.md",
}


def test_readme_links_required_documents() -> None:
    linked = {Path(target).as_posix() for target in linked_paths(REPO / "README.md")}
    unlinked = [
        f"README.md has no link to the {name} document {path}; add one under "
        "'## Documentation'"
        for name, path in REQUIRED_DOCUMENTS.items()
        if path not in linked
    ]

    assert not unlinked, "\n".join(unlinked)


def test_readme_links_resolve() -> None:
    missing = [
        f"README.md links to {target}, which does not exist"
        for target in linked_paths(REPO / "README.md")
        if not (REPO / target).exists()
    ]

    assert not missing, "\n".join(missing)
