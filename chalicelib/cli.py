"""The ``nudge`` command: check trigger and template files, apply them to a
running Nudge, list what is defined.

    nudge validate DIR     check every file; prints "file: field: reason" per problem
    nudge apply DIR        check, then PUT each template, then each trigger
    nudge list             the triggers defined in Nudge

DIR holds ``triggers/*.yaml`` and ``templates/*.yaml``, or is itself a
directory of either (a file with a ``channel`` is a template). A file's ``id``
must be its name without ``.yaml``. ``apply`` and ``list`` talk to the admin
API at ``--url`` (``NUDGE_URL``, default http://127.0.0.1:8000) with
``--token`` (``NUDGE_ADMIN_TOKEN``, default the local stack's token).

Exit status: 0 when all is well, 1 when a definition or the API refused, 2 for
a usage error. Standard library only (argparse, urllib) besides PyYAML.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from chalicelib.templates import InvalidDefinition, Template, parse_template
from chalicelib.triggers import Trigger, parse_trigger

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TOKEN = "nudge-local-admin-token"
USER_AGENT = "nudge-cli/1"
SUFFIXES = (".yaml", ".yml")

#: (method, path, JSON body or None) -> (HTTP status, decoded JSON body or None)
Transport = Callable[[str, str, Any], "tuple[int, Any]"]


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.rule}"


@dataclass
class Definitions:
    """What a directory defines, and what is wrong with it."""

    templates: list[tuple[str, Template]] = field(default_factory=list)
    triggers: list[tuple[str, Trigger]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: False when the directory has no templates and none were known otherwise,
    #: so template references could not be checked.
    references_checked: bool = True


def read_definitions(path: Path, known_templates: Mapping[str, str] | None = None) -> Definitions:
    """Read and check every definition under ``path`` (a directory or one file).

    ``known_templates`` (id -> channel, e.g. those already in Nudge) may be
    referenced by triggers besides the directory's own templates.
    """
    result = Definitions()
    template_docs, trigger_docs = _sort_files(path, result)
    for name, doc in template_docs:
        try:
            result.templates.append((name, parse_template(doc, name)))
        except InvalidDefinition as exc:
            result.problems.extend(Problem(name, p.field, p.rule) for p in exc.problems)
    channels = dict(known_templates or {})
    channels.update({template.id: template.channel for _, template in result.templates})
    # A template that failed its own checks still exists for references.
    channels.update({str(doc.get("id")): str(doc.get("channel")) for _, doc in template_docs
                     if isinstance(doc, Mapping) and str(doc.get("id")) not in channels})
    checked = bool(channels) or bool(template_docs)
    result.references_checked = checked
    for name, doc in trigger_docs:
        try:
            result.triggers.append((name, parse_trigger(doc, templates=channels if checked else None, origin=name)))
        except InvalidDefinition as exc:
            result.problems.extend(Problem(name, p.field, p.rule) for p in exc.problems)
    _check_ids(result, template_docs, "template")
    _check_ids(result, trigger_docs, "trigger")
    return result


def _sort_files(path: Path, result: Definitions) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(template documents, trigger documents), each with its file name."""
    templates: list[tuple[str, Any]] = []
    triggers: list[tuple[str, Any]] = []
    if path.is_file():
        files = [(path, None)]
    elif (path / "triggers").is_dir() or (path / "templates").is_dir():
        files = [(f, "template") for f in _yaml_files(path / "templates")]
        files += [(f, "trigger") for f in _yaml_files(path / "triggers")]
    else:
        files = [(f, None) for f in _yaml_files(path)]
    for file, kind in files:
        name = str(file)
        doc = _load(file, result)
        if doc is _UNREADABLE:
            continue
        if kind is None:
            kind = "template" if isinstance(doc, Mapping) and "channel" in doc else "trigger"
        (templates if kind == "template" else triggers).append((name, doc))
    return templates, triggers


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(f for f in directory.iterdir() if f.suffix in SUFFIXES and f.is_file())


_UNREADABLE = object()


def _load(file: Path, result: Definitions) -> Any:
    import yaml

    try:
        with file.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        result.problems.append(Problem(str(file), "(yaml)", f"is not valid YAML: {reason}{where}"))
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(Problem(str(file), "(file)", f"cannot be read: {exc}"))
    return _UNREADABLE


def _check_ids(result: Definitions, docs: list[tuple[str, Any]], kind: str) -> None:
    seen: dict[str, str] = {}
    for name, doc in docs:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
            continue
        definition_id = doc["id"]
        stem = Path(name).stem
        if Path(name).suffix in SUFFIXES and definition_id != stem:
            result.problems.append(Problem(name, "id", f"must equal the file name ({stem!r})"))
        if definition_id in seen:
            result.problems.append(Problem(name, "id", f"is also the id of the {kind} in {seen[definition_id]}"))
        seen.setdefault(definition_id, name)


# --- the admin API ------------------------------------------------------------------------------


def http_transport(url: str, token: str, timeout: float = 15.0) -> Transport:
    """Calls to the admin API at ``url`` with a Bearer ``token``."""
    base = url.rstrip("/")

    def send(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "Accept": "application/json",
        })
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    return send


class ApiError(Exception):
    """The admin API refused or could not be reached; the message says why."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _call(transport: Transport, method: str, path: str, body: Any = None, origin: str = "") -> Any:
    try:
        status, answer = transport(method, path, body)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError([f"cannot reach Nudge for {method} {path}: {reason}"]) from exc
    if status < 400:
        return answer
    failure = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
    if status == 401:
        raise ApiError([f"{method} {path}: the admin token was refused (set --token or NUDGE_ADMIN_TOKEN)"])
    problems = failure.get("problems") or []
    if problems:
        raise ApiError([f"{origin or path}: {p.get('field')}: {p.get('rule')}" for p in problems])
    raise ApiError([f"{method} {path}: HTTP {status}: {failure.get('message', 'no explanation given')}"])


# --- commands -----------------------------------------------------------------------------------


def validate(directory: Path, out: TextIO, err: TextIO) -> int:
    found = read_definitions(directory)
    return _report(found, directory, out, err, "valid")


def _report(found: Definitions, directory: Path, out: TextIO, err: TextIO, word: str) -> int:
    for problem in found.problems:
        print(problem, file=out)
    if not found.references_checked and found.triggers:
        print(f"note: {directory} has no templates, so the templates triggers name were not checked", file=err)
    if found.problems:
        print(f"{len(found.problems)} problem(s) in {directory}", file=err)
        return 1
    print(f"{word}: {len(found.templates)} template(s), {len(found.triggers)} trigger(s) in {directory}", file=out)
    return 0


def apply(directory: Path, transport: Transport, out: TextIO, err: TextIO) -> int:
    try:
        listed = _call(transport, "GET", "/v1/templates") or {}
        known = {row["id"]: row.get("channel") for row in listed.get("templates", [])}
        found = read_definitions(directory, known_templates=known)
        if found.problems:
            return _report(found, directory, out, err, "valid")
        for name, template in found.templates:
            answer = _call(transport, "PUT", f"/v1/templates/{template.id}", template.as_dict(), name)
            print(f"template {template.id}: {answer['outcome']} (version {answer['version']})", file=out)
        for name, trigger in found.triggers:
            answer = _call(transport, "PUT", f"/v1/triggers/{trigger.id}", dict(trigger.source), name)
            print(f"trigger {trigger.id}: {answer['outcome']} (version {answer['version']})", file=out)
    except ApiError as exc:
        for line in exc.lines:
            print(line, file=out)
        return 1
    return 0


def list_triggers(transport: Transport, out: TextIO) -> int:
    try:
        rows = (_call(transport, "GET", "/v1/triggers") or {}).get("triggers", [])
    except ApiError as exc:
        for line in exc.lines:
            print(line, file=out)
        return 1
    table = [("ID", "CATEGORY", "EVENT", "ENABLED", "VERSION")]
    table += [(r["id"], str(r.get("category")), str(r.get("event")), "yes" if r.get("enabled") else "no",
               str(r.get("version"))) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nudge", description="Manage Nudge's triggers and templates.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("validate", help="check trigger and template files")
    check.add_argument("directory", type=Path, metavar="DIR")
    for name, help_text in (("apply", "check, then save every template and trigger in Nudge"),
                            ("list", "list the triggers defined in Nudge")):
        command = commands.add_parser(name, help=help_text)
        if name == "apply":
            command.add_argument("directory", type=Path, metavar="DIR")
        command.add_argument("--url", default=os.environ.get("NUDGE_URL", DEFAULT_URL),
                             help="Nudge's HTTP API (env NUDGE_URL; default %(default)s)")
        command.add_argument("--token", default=os.environ.get("NUDGE_ADMIN_TOKEN", DEFAULT_TOKEN),
                             help="an admin token (env NUDGE_ADMIN_TOKEN; default: the local stack's)")
    return top


def main(argv: Sequence[str] | None = None, *, transport: Transport | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command; returns the exit status. ``transport`` replaces HTTP (tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    if args.command in ("validate", "apply") and not args.directory.exists():
        print(f"nudge: {args.directory}: no such file or directory", file=err)
        return 2
    if args.command == "validate":
        return validate(args.directory, out, err)
    send = transport or http_transport(args.url, args.token)
    if args.command == "apply":
        return apply(args.directory, send, out, err)
    return list_triggers(send, out)


if __name__ == "__main__":  # python -m chalicelib.cli
    sys.exit(main())
