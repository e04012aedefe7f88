"""The docs say only what the code does: every `ingest ...` command in README.md and docs/ parses with the real
argparse parser (subcommands, flags, choices), every log event a doc quotes as `"event":"..."` is one the code
logs, and every local link points at a file that exists.

Conventions the docs follow so this can be checked: `a|b` inside a command (no spaces) means "a or b"; `...`
stands for more arguments; a log event is quoted as JSON (`"event":"<message as logged>"`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest

from ingest.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SUBCOMMANDS = "run|sim|stack|demo|topics|schemas|check|tail"
COMMAND = re.compile(rf"(?:\.venv/bin/)?\bingest ((?:{SUBCOMMANDS})\b[^`\n;&#)]*)")
EVENT = re.compile(r'"event":\s*"([^"{\\][^"]*)"')  # not a JSON payload quoted in a sent-log line
LOG_CALL = re.compile(r'\blog\.(?:debug|info|warning|error|exception|critical)\(\s*(f?)"((?:[^"\\]|\\.)*)"')
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _text(doc: Path) -> str:
    return re.sub(r"\\\n\s*", " ", doc.read_text())  # shell line continuations


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for match in COMMAND.finditer(_text(doc)):
            command = re.split(r"\s+\|\s+|\s{2,}|\s+\d?>", match.group(1))[0].strip()  # a pipe or comment ends it
            found.append((doc.name, command.replace("...", "").strip()))
    return sorted(set(found))


def _variants(command: str) -> list[list[str]]:
    tokens = shlex.split(command)
    choices = [token.split("|") if "|" in token and not token.startswith(("'", '"', "http")) else [token]
               for token in tokens]
    return [list(combo) for combo in itertools.product(*choices)]


@pytest.mark.parametrize(("doc", "command"), documented_commands())
def test_documented_command_parses(doc, command):
    parser, _ = build_parser()
    if command in SUBCOMMANDS.split("|"):
        return  # a subcommand named in prose ("`ingest stack`"): it exists
    for argv in _variants(command):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                assert exc.code == 0, f"{doc}: `ingest {' '.join(argv)}`: {err.getvalue().strip()}"


def test_docs_mention_commands():
    assert len(documented_commands()) >= 10  # the extraction itself works


def _log_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for source in (ROOT / "ingest").rglob("*.py"):
        for is_f, message in LOG_CALL.findall(source.read_text()):
            # %-style placeholders and f-string fields stand for any text
            literal = re.split(r"(%[-+ #0-9.]*[sdfrix]|\{[^}]*\})" if is_f else r"(%[-+ #0-9.]*[sdfrix])", message)
            regex = "".join(".+?" if i % 2 else re.escape(part) for i, part in enumerate(literal))
            patterns.append(re.compile(regex))
    return patterns


def documented_events() -> list[tuple[str, str]]:
    return sorted({(doc.name, event) for doc in DOCS for event in EVENT.findall(_text(doc))})


@pytest.mark.parametrize(("doc", "event"), documented_events())
def test_documented_log_event_is_logged_by_the_code(doc, event):
    assert any(p.fullmatch(event) for p in _log_patterns()), f"{doc}: no log call in ingest/ logs {event!r}"


def test_local_links_exist():
    missing = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not missing
