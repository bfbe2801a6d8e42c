"""Run the socat examples of docs/protocol.md against a server and compare answers.

The examples run in document order against one in-memory service, whose
catalog and jobs are the ones the document shows, so a job queued by an
earlier example is visible to a later one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelwatch.protocol import ErrorCode
from reelwatch.server import METHODS
from rpc_doubles import FakeService, server_thread, short_socket_dir

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
DOC_SOCKET = ".state/reelwatch.sock"

pytestmark = pytest.mark.skipif(
    shutil.which("socat") is None, reason="socat is not installed"
)


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    expected: str


def extract_examples(text: str) -> list[Example]:
    """Return each ``$ command`` of the console blocks with the output after it."""
    examples: list[Example] = []
    for block in re.finditer(r"^```console\n(.*?)^```", text, re.M | re.S):
        first_line = text.count("\n", 0, block.start()) + 2
        command: str | None = None
        start = 0
        output: list[str] = []
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                if command is not None:
                    examples.append(Example(start, command, "\n".join(output)))
                command, start, output = line[2:], first_line + offset, []
            else:
                output.append(line)
        if command is not None:
            examples.append(Example(start, command, "\n".join(output)))
    return examples


def parse_json_values(text: str) -> list[Any]:
    """Parse consecutive JSON values, each on one or more lines."""
    decoder = json.JSONDecoder()
    values = []
    position = 0
    text = text.strip()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    return values


EXAMPLES = extract_examples(DOC.read_text())


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A folder holding ``.state/reelwatch.sock`` served by the fake service."""
    with short_socket_dir() as directory:
        socket_path = directory / DOC_SOCKET
        with server_thread(FakeService(), socket_path):
            yield directory


def test_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert all(DOC_SOCKET in example.command for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}")
def test_example_output_matches(workdir: Path, example: Example) -> None:
    done = subprocess.run(
        ["bash", "-c", example.command],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    assert parse_json_values(done.stdout) == parse_json_values(example.expected)
    assert len(done.stdout.splitlines()) == len(parse_json_values(example.expected))


def test_every_method_is_documented() -> None:
    text = DOC.read_text()

    missing = [name for name in METHODS if f"### `{name}`" not in text]

    assert missing == []


def test_every_error_code_is_documented() -> None:
    text = DOC.read_text()

    missing = [code for code in ErrorCode if f"| {int(code)} |" not in text]

    assert missing == []
