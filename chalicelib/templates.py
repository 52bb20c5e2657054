"""Message templates: what they are, how they are checked, how they are rendered.

A template is the content of one message on one channel (an email's subject and
bodies, an SMS or alert text, a webhook body), written in Liquid. Templates are
checked when they are defined, so a syntax error or an unknown filter is
refused at ``nudge apply`` time instead of failing a send later.

Rendering is strict: a variable the context does not have raises
``MissingVariable``, a permanent error (retrying the same send cannot fix it).
``{{ x | default: "there" }}`` and ``{% if x %}`` still work on a missing
``x``, so templates can fall back explicitly. Only the HTML part is
HTML-escaped; subject and text are plain text.

The context a sender passes is a mapping of JSON-like values; by convention
``event`` (the Segment event, as ``Event.as_dict()``) and ``profile``
(``Profile.as_dict()``).

python-liquid is imported inside the functions that need it: it costs about
0.1 s to import and most handlers never render.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from chalicelib.errors import FieldProblem, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from liquid import BoundTemplate, Environment

CHANNELS = ("email", "sms", "alert", "webhook")
#: Ids of triggers and templates: lower-case slugs, safe in URLs and file names.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ID_RULE = "must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit"
#: Which parts each channel has; the rest are refused.
PARTS = {
    "email": ("subject", "html", "text"),
    "sms": ("text",),
    "alert": ("subject", "text"),
    "webhook": ("text",),
}
_KEYS = ("id", "channel", "description", "subject", "html", "text")
#: Tags that read other files; templates are self-contained.
_REFUSED_TAGS = {"include", "render", "extends", "block"}
#: Guards against a template that loops or grows without end.
LOOP_LIMIT = 10_000
OUTPUT_LIMIT = 1_000_000


class InvalidDefinition(InvalidInput):
    """A trigger or template that Nudge refuses; names the origin (a file, or
    the API call), and each field with the rule it broke."""

    def __init__(self, problems: list[FieldProblem], origin: str) -> None:
        super().__init__(problems)
        self.origin = origin

    def __str__(self) -> str:
        return "; ".join(f"{self.origin}: {p.field}: {p.rule}" for p in self.problems)


class RenderError(Exception):
    """A template could not be rendered with this context. Permanent: the
    same template and context fail the same way every time."""


class MissingVariable(RenderError):
    """The template uses a variable the context does not have."""

    def __init__(self, name: str, part: str | None = None) -> None:
        self.name = name
        self.part = part
        where = f" (in the {part})" if part else ""
        super().__init__(f"the template uses {name}, which this message's context does not have{where}")


@dataclass(frozen=True)
class Template:
    id: str
    channel: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    version: int = 0
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The template in its file and API shape (without version)."""
        out: dict[str, Any] = {"id": self.id, "channel": self.channel}
        if self.description:
            out["description"] = self.description
        for part in ("subject", "html", "text"):
            value = getattr(self, part)
            if value is not None:
                out[part] = value
        return out


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    html: str | None
    text: str | None


def parse_template(doc: Any, origin: str, *, version: int = 0, check_liquid: bool = True) -> Template:
    """Check a template document (a file's YAML or an API body) and return it.

    ``check_liquid=False`` skips parsing the Liquid of a template already
    checked (read back from storage). Raises InvalidDefinition listing every
    problem found.
    """
    problems: list[FieldProblem] = []
    if not isinstance(doc, Mapping):
        raise InvalidDefinition([FieldProblem("(document)", "must be a mapping with id, channel and content")],
                                origin)
    for key in doc:
        if key not in _KEYS:
            problems.append(FieldProblem(str(key), f"is not a template field (expected one of {', '.join(_KEYS)})"))
    template_id = doc.get("id")
    if not isinstance(template_id, str) or not ID_PATTERN.fullmatch(template_id):
        problems.append(FieldProblem("id", ID_RULE))
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.append(FieldProblem("description", "must be a string"))
    channel = doc.get("channel")
    if channel not in CHANNELS:
        problems.append(FieldProblem("channel", f"must be one of {', '.join(CHANNELS)}"))
        channel = None  # the checks by channel below skip it (it may be a list or an object)
    parts: dict[str, str | None] = {}
    for part in ("subject", "html", "text"):
        value = doc.get(part)
        if value is None:
            parts[part] = None
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(FieldProblem(part, "must be a non-empty string"))
            continue
        if channel in PARTS and part not in PARTS[channel]:
            problems.append(FieldProblem(part, f"is not part of {_a(channel)} template "
                                               f"(it has {', '.join(PARTS[channel])})"))
            continue
        reason = liquid_problem(value) if check_liquid else None
        if reason:
            problems.append(FieldProblem(part, reason))
        parts[part] = value
    if channel == "email":
        if doc.get("subject") is None:
            problems.append(FieldProblem("subject", "is required for an email template"))
        if doc.get("html") is None and doc.get("text") is None:
            problems.append(FieldProblem("html", "an email template needs html or text (or both)"))
    elif channel in PARTS and doc.get("text") is None:
        problems.append(FieldProblem("text", f"is required for {_a(channel)} template"))
    if problems:
        raise InvalidDefinition(problems, origin)
    return Template(id=template_id, channel=channel, subject=parts["subject"], html=parts["html"],
                    text=parts["text"], version=version, description=description)


def _a(channel: str) -> str:
    return f"an {channel}" if channel in ("email", "sms", "alert") else f"a {channel}"


def liquid_problem(source: str) -> str | None:
    """Why ``source`` is not a valid Liquid template, or None when it is."""
    if "{" not in source:
        return None  # plain text: no need to load Liquid
    from liquid.exceptions import LiquidError, TemplateNotFoundError

    environment = _environment(False)
    try:
        analysis = environment.from_string(source).analyze()
    except TemplateNotFoundError:
        return "includes another template, which Nudge does not allow: templates are self-contained"
    except LiquidError as exc:
        return f"is not valid Liquid: {_describe(exc, source)}"
    unknown = sorted(name for name in analysis.filters if name not in environment.filters)
    if unknown:
        return f"uses an unknown Liquid filter: {', '.join(unknown)}"
    refused = sorted(name for name in analysis.tags if name in _REFUSED_TAGS)
    if refused:
        return f"uses the Liquid tag {refused[0]}, which Nudge does not allow: templates are self-contained"
    return None


def inline(channel: str, text: str, subject: str | None = None) -> Template:
    """An unsaved template for an action's inline ``text`` (sms, alert); its
    Liquid was checked when the trigger was defined."""
    return Template(id="inline", channel=channel, subject=subject, text=text)


def render(template: Template, context: Mapping[str, Any]) -> Rendered:
    """Render every part of ``template`` with ``context``.

    Raises MissingVariable when the template uses a variable the context lacks,
    RenderError for any other rendering failure (a filter given a wrong value,
    a loop over the limit). Both are permanent.
    """
    return Rendered(
        subject=_one_line(render_text(template.subject, context, part="subject")),
        html=_render(template.html, context, escape=True, part="html"),
        text=render_text(template.text, context, part="text"),
    )


def _one_line(subject: str | None) -> str | None:
    """A subject is one header line: line breaks from data become spaces, so
    they can neither add a header nor make the mail library refuse the message."""
    return None if subject is None else re.sub(r"[\r\n]+", " ", subject)


def render_text(source: str | None, context: Mapping[str, Any], *, part: str | None = None) -> str | None:
    """Render one plain-text Liquid string (not escaped), e.g. an inline SMS
    text or an action's ``to``. None stays None."""
    return _render(source, context, escape=False, part=part)


def _render(source: str | None, context: Mapping[str, Any], *, escape: bool, part: str | None) -> str | None:
    if source is None:
        return None
    if "{" not in source:
        return source
    from liquid.exceptions import LiquidError, UndefinedError

    try:
        return _compiled(source, escape).render(**dict(context))
    except UndefinedError as exc:
        raise MissingVariable(_variable_name(exc), part) from exc
    except LiquidError as exc:
        raise RenderError(f"the {part or 'template'} could not be rendered: {_describe(exc, source)}") from exc


@lru_cache(maxsize=512)
def _compiled(source: str, escape: bool) -> BoundTemplate:
    return _environment(escape).from_string(source)


@lru_cache(maxsize=2)
def _environment(escape: bool) -> Environment:
    from liquid import Environment, FalsyStrictUndefined

    class Missing(FalsyStrictUndefined):
        """Strict on output; false in ``if`` and replaced by ``default``."""

        force_liquid_default = True

    class Limited(Environment):
        loop_iteration_limit = LOOP_LIMIT
        output_stream_limit = OUTPUT_LIMIT

    return Limited(undefined=Missing, autoescape=escape, strict_filters=True)


def _describe(exc: Exception, source: str) -> str:
    """The first line of a Liquid error and where it happened."""
    message = str(exc.args[0] if exc.args else exc).splitlines()[0]
    token = getattr(exc, "token", None)
    index = getattr(token, "start_index", None)
    if isinstance(index, int) and 0 <= index <= len(source):
        line = source.count("\n", 0, index) + 1
        column = index - (source.rfind("\n", 0, index) + 1) + 1
        return f"{message} (line {line}, column {column})"
    return message


def _variable_name(exc: Exception) -> str:
    message = str(exc.args[0] if exc.args else exc).splitlines()[0]
    name = message.removesuffix(" is undefined").strip()
    return name.strip("'\"") or "a variable"


def template_ids(templates: Iterable[Template]) -> dict[str, str]:
    """id -> channel, the shape ``parse_trigger`` checks references against."""
    return {template.id: template.channel for template in templates}
