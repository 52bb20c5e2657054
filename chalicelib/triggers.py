"""Trigger definitions: what a trigger is and the rules a definition must follow.

A trigger says "when this happens (and this pattern matches), do these
things". It is written in YAML (``triggers/*.yaml``) or sent as the same
shape in JSON to the admin API::

    id: order-confirmation
    description: Confirm every order by email
    category: transactional          # transactional | marketing | internal
    when:
      event: Order Completed         # a track event's name; or `type: page`
      match:                         # optional EventBridge pattern over
        event: {properties: {total: [{numeric: [">", 0]}]}}   # {event, profile}
    then:
      - email: {template: order-confirmation, from: "Shop <orders@example.com>"}
    enabled: true                    # optional

A trigger may wait before it acts, and be called off by what the person does
meanwhile (the abandoned cart)::

    when: {event: Product Added}
    wait: 1h                         # see chalicelib.durations
    unless: {event: Order Completed} # or a list of them; {type: page} for calls

Date triggers act on a day rather than on an event (``chalicelib.date_triggers``
computes their timers)::

    when:
      anniversary:
        trait: birthday              # a trait holding YYYY-MM-DD, an ISO date-time or --MM-DD
        at: "09:00"                  # local time in the person's zone (default 09:00)
        offset: -7d                  # optional: a week before
        every: year                  # year (default) | month | none (once)
        months: 6                    # optional: months added (6 months after the date)
      match: {profile: {traits: {newsletter: [true]}}}   # optional, over {profile} only
    ---
    when:
      inactive:
        for: 30d                     # no event at all for 30 days (at least 1h)
        event: Order Completed       # optional: no event of this kind
        at: "10:00"                  # optional local send time on the due day

They are indexed under the reserved keys ``@anniversary`` and ``@inactive``
(event names may not start with ``@``), take no ``wait`` or ``unless``, and
their ``match`` sees the profile only.

Scheduled broadcasts act on everyone in an audience at a time of the calendar
(a holiday offer); ``chalicelib.broadcasts`` runs them::

    when:
      schedule: "cron(0 9 24 12 ? *)"   # or rate(7 days); EventBridge syntax, UTC
      audience: {profile: {traits: {email: [{exists: true}]}}}   # optional: everyone

They are indexed under ``@broadcast`` and take no ``wait``, ``unless``,
``steps``, ``exit`` or ``count``.

``parse_trigger`` checks every rule and reports all problems at once, each
with its field and reason. Pure: no AWS, no I/O; Liquid is loaded only to
check inline texts. Evaluation lives in ``chalicelib.evaluate``.

Values in action parameters are used as written, except the inline ``text`` of
sms and alert actions, which is Liquid like a template. A missing ``to`` means
the person's ``email`` (email) or ``phone`` (sms) trait.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping
from urllib.parse import urlsplit

from chalicelib.errors import FieldProblem
from chalicelib.templates import ID_PATTERN, ID_RULE, InvalidDefinition, liquid_problem

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.patterns import Pattern

__all__ = [
    "ACTION_KINDS", "ANNIVERSARY_KEY", "BROADCAST_KEY", "CALL_TYPES", "CATEGORIES", "INACTIVE_KEY", "Action", "Anniversary",
    "Inactivity", "InvalidDefinition", "Trigger", "event_key_for", "parse_trigger", "referenced_templates",
]

ACTION_KINDS = ("email", "sms", "alert", "webhook", "update_profile", "emit")
CATEGORIES = ("transactional", "marketing", "internal")
#: Segment calls other than track; a trigger on one of them says ``when: {type: ...}``.
CALL_TYPES = ("page", "screen", "identify", "group", "alias")
#: The channel a template must have to be used by each action kind.
TEMPLATE_CHANNEL = {"email": "email", "sms": "sms", "alert": "alert", "webhook": "webhook"}
MAX_ACTIONS = 10
MAX_WEBHOOK_TIMEOUT = 10
MAX_EVENT_NAME = 200
_TOP_KEYS = ("id", "description", "category", "when", "then", "enabled", "wait", "unless", "steps", "exit",
             "reentry", "topic", "priority", "expires", "quiet_hours", "budget")
#: Marketing messages wait at most this long for quiet hours or the budget, unless ``expires`` says otherwise.
DEFAULT_EXPIRY = timedelta(days=7)
PRIORITIES = range(1, 11)
DEFAULT_PRIORITY = 5
#: Channels whose marketing messages need a subscription topic and count against the budget.
PERSONAL_CHANNELS = ("email", "sms")
_WHEN_KEYS = ("event", "type", "anniversary", "inactive", "schedule", "audience", "match", "count")
_STEP_KEYS = ("wait", "match", "then")
MAX_STEPS = 20
REENTRY_RULES = ("every", "once")
#: The index keys of date triggers: never a Segment event's name (those may not start with "@").
ANNIVERSARY_KEY = "@anniversary"
INACTIVE_KEY = "@inactive"
BROADCAST_KEY = "@broadcast"
_ANNIVERSARY_KEYS = ("trait", "at", "offset", "every", "months")
_INACTIVE_KEYS = ("for", "event", "at")
_EVERY = {"year": "year", "month": "month", "none": None}
MIN_INACTIVITY = timedelta(hours=1)
_LOCAL_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_MATCH_ROOTS = ("event", "profile")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class Action:
    """One thing a trigger does, in the order written (``index`` 0, 1, ...).

    ``params`` are the action's parameters as written, checked (see the
    module docstring for each kind's keys).
    """

    kind: str
    params: Mapping[str, Any]
    index: int


@dataclass(frozen=True)
class Anniversary:
    """``when.anniversary``: act on a date a profile trait holds (see chalicelib.anniversaries)."""

    trait: str
    at: time = time(9, 0)
    offset: timedelta = timedelta(0)
    #: "year", "month", or None for a single occurrence.
    every: str | None = "year"
    months: int = 0


@dataclass(frozen=True)
class Inactivity:
    """``when.inactive``: act when a person has been silent for ``silence``."""

    silence: timedelta
    #: Only events of this kind (a counter name) count; None: any event.
    event: str | None = None
    #: Local send time on the due day; None: on the hour after the silence ends.
    at: time | None = None


@dataclass(frozen=True)
class Step:
    """One step of a sequence: after ``wait`` (from the step before, or from the
    event for the first), if ``match`` holds for the person then, do ``actions``."""

    index: int
    wait: timedelta | None
    match: Pattern | None = field(compare=False)
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class CountRule:
    """``when.count``: the trigger acts once the person has done the event at
    least ``at_least`` times within ``within`` (this event included)."""

    at_least: int
    within: timedelta


@dataclass(frozen=True)
class Trigger:
    id: str
    description: str
    category: str
    #: The track event's name, or the call type for page/screen/identify/group/alias:
    #: the same value as ``Event.counter_name``, and the key triggers are indexed by.
    event_key: str
    #: The compiled ``when.match`` pattern (``.matches({"event", "profile"})``), or None.
    match: Pattern | None = field(compare=False)
    match_source: dict[str, Any] | None
    actions: tuple[Action, ...]
    enabled: bool = True
    #: The stored version; 0 for a definition read from a file.
    version: int = 0
    #: The definition as written (YAML or JSON shape), for storage and display.
    source: Mapping[str, Any] = field(default_factory=dict)
    #: How long to wait after the event before acting (None: act at once).
    wait: timedelta | None = None
    #: Event keys that call a waiting trigger off when they happen during the wait.
    unless: tuple[str, ...] = ()
    #: Date triggers (event_key ANNIVERSARY_KEY or INACTIVE_KEY): when they act.
    anniversary: Anniversary | None = None
    inactivity: Inactivity | None = None
    #: A sequence's steps (``actions`` then holds every step's actions).
    steps: tuple[Step, ...] = ()
    #: Event keys that take a person out of the sequence (the goal).
    exit_on: tuple[str, ...] = ()
    #: Who may set the trigger off again: "every" time, "once" ever, or once per ``reentry_period``.
    reentry: str = "every"
    reentry_period: timedelta | None = None
    count: CountRule | None = None
    #: A broadcast's schedule (event_key BROADCAST_KEY; ``match`` is then its audience).
    schedule: Any = field(default=None, compare=False)
    #: The subscription topic of a marketing trigger's email and SMS (chalicelib.consent).
    topic: str | None = None
    #: 1 (lowest) to 10: who gets a freed slot of the fatigue budget first.
    priority: int = DEFAULT_PRIORITY
    #: How long a held marketing message may wait before it is dropped.
    expires: timedelta = DEFAULT_EXPIRY
    #: False: the trigger's messages ignore quiet hours (never for a marketing SMS).
    quiet_hours: bool = True
    #: False: the trigger's messages do not count against the budget (transactional only).
    budget: bool = True

    @property
    def policy(self) -> dict[str, Any]:
        """What delivery needs to know to apply the person's limits (carried by each Decision)."""
        return {"topic": self.topic, "priority": self.priority, "expires": int(self.expires.total_seconds()),
                "quietHours": self.quiet_hours, "budget": self.budget}

    @property
    def call_type(self) -> str:
        """``track`` for a trigger on a named event, else the call type."""
        return self.event_key if self.event_key in CALL_TYPES else "track"

    @property
    def template_ids(self) -> set[str]:
        return {str(a.params["template"]) for a in self.actions if a.params.get("template")}


def event_key_for(call_type: str, event_name: str | None) -> str:
    """The key triggers for a call are indexed by (``Event.counter_name``)."""
    return event_name if call_type == "track" and event_name else call_type


def referenced_templates(doc: Any) -> set[str]:
    """The template ids a definition's actions name, read leniently before
    checking (so the caller can look up just those)."""
    found: set[str] = set()
    lists = [doc.get("then")] if isinstance(doc, Mapping) else []
    steps = doc.get("steps") if isinstance(doc, Mapping) else None
    lists += [step.get("then") for step in steps if isinstance(step, Mapping)] if isinstance(steps, list) else []
    for then in lists:
        for item in then if isinstance(then, list) else ():
            for params in item.values() if isinstance(item, Mapping) else ():
                if isinstance(params, Mapping) and isinstance(params.get("template"), str):
                    found.add(params["template"])
    return found


def parse_trigger(
    doc: Any,
    *,
    templates: Mapping[str, str] | Collection[str] | None,
    origin: str,
    version: int = 0,
    check_liquid: bool = True,
) -> Trigger:
    """Check a trigger definition and return the Trigger.

    ``templates`` are the template ids a reference may name: a mapping id ->
    channel also checks that each template fits its action (an email template
    for an email), a plain collection checks existence only, None skips the
    check. ``origin`` (a file name, an API call) is carried by the error.
    ``check_liquid=False`` skips Liquid checks of definitions already checked
    (read back from storage), so evaluating never loads Liquid.

    Raises InvalidDefinition with every problem found.
    """
    if not isinstance(doc, Mapping):
        raise InvalidDefinition([FieldProblem("(document)", "must be a mapping with id, when and then")], origin)
    checker = _Checker(templates, check_liquid)
    checker.unknown_keys(doc, _TOP_KEYS, "", "a trigger field")
    checker.not_json(doc, "")

    trigger_id = doc.get("id")
    if not isinstance(trigger_id, str) or not ID_PATTERN.fullmatch(trigger_id):
        checker.problem("id", ID_RULE)
    description = doc.get("description", "")
    if not isinstance(description, str):
        checker.problem("description", "must be a string: a sentence saying what the trigger is for")
    category = doc.get("category")
    if category not in CATEGORIES:
        checker.problem("category", f"must be one of {', '.join(CATEGORIES)}")
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        checker.problem("enabled", "must be true or false")

    event_key, match, match_source = checker.when(doc.get("when"))
    broadcast = event_key == BROADCAST_KEY
    dated = event_key in (ANNIVERSARY_KEY, INACTIVE_KEY, BROADCAST_KEY)
    own_event = event_key if event_key not in CALL_TYPES and not dated else None
    if "steps" in doc:
        if "then" in doc or "wait" in doc:
            checker.problem("steps", "replaces then and wait: put each step's wait and actions in the step")
        steps = checker.steps(doc.get("steps"), own_event=own_event)
        actions = tuple(action for step in steps for action in step.actions)
    else:
        steps = ()
        actions = checker.then(doc.get("then"), own_event=own_event)
    wait = checker.wait(doc.get("wait"))
    unless = checker.unless(doc.get("unless"), has_wait=wait is not None, event_key=event_key)
    exit_on = checker.event_keys(doc.get("exit"), "exit", event_key) if "exit" in doc else ()
    if exit_on and not steps:
        checker.problem("exit", "is for sequences (steps): a goal event takes the person out of the remaining steps")
    when_doc = doc.get("when") if isinstance(doc.get("when"), Mapping) else {}
    count = checker.count(when_doc.get("count"), dated, broadcast)
    reentry, reentry_period = checker.reentry(doc.get("reentry"))
    if count is not None and "reentry" not in doc:
        reentry, reentry_period = "once_per", count.within  # cross the threshold once per window
    if broadcast:
        for key in ("wait", "unless", "steps", "exit"):
            if key in doc:
                checker.problem(key, "is not for broadcasts: they act on their audience at the scheduled time")
    elif dated:
        for key in ("wait", "unless"):
            if key in doc:
                checker.problem(key, "is not for date triggers: they act on the day itself "
                                     "(use offset for earlier or later)")
    topic, priority, expires, quiet_hours, budget = checker.delivery_policy(doc, category, actions)
    if checker.problems:
        raise InvalidDefinition(checker.problems, origin)
    return Trigger(
        id=trigger_id, description=description.strip(), category=category, event_key=event_key, match=match,
        match_source=match_source, actions=actions, enabled=enabled, version=version,
        source=json.loads(json.dumps(doc)), wait=wait, unless=unless,
        anniversary=checker.anniversary_rule, inactivity=checker.inactivity_rule,
        steps=steps, exit_on=exit_on, reentry=reentry, reentry_period=reentry_period, count=count,
        schedule=checker.schedule_rule, topic=topic, priority=priority, expires=expires,
        quiet_hours=quiet_hours, budget=budget,
    )


class _Checker:
    """Collects problems while walking one definition."""

    def __init__(self, templates: Mapping[str, str] | Collection[str] | None, check_liquid: bool) -> None:
        self.templates = templates
        self.check_liquid = check_liquid
        self.problems: list[FieldProblem] = []
        self.anniversary_rule: Anniversary | None = None
        self.inactivity_rule: Inactivity | None = None
        self.schedule_rule: Any = None

    def problem(self, path: str, rule: str) -> None:
        self.problems.append(FieldProblem(path, rule))

    def unknown_keys(self, mapping: Mapping[Any, Any], allowed: Collection[str], path: str, what: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(_join(path, str(key)), f"is not {what} (expected one of {', '.join(allowed)})")

    def not_json(self, value: Any, path: str) -> None:
        """Report values JSON cannot carry (YAML dates, sets, non-string keys)."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.problem(_join(path, str(key)), "keys must be strings (quote them)")
                else:
                    self.not_json(item, _join(path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.not_json(item, f"{path}[{index}]")
        elif not (value is None or isinstance(value, (str, bool, int, float))):
            self.problem(path or "(document)", f"must be a JSON value, not a {type(value).__name__} "
                                               "(quote dates and times)")

    # --- wait and unless ---------------------------------------------------------------------

    def wait(self, raw: Any) -> timedelta | None:
        if raw is None:
            return None
        from chalicelib.durations import parse_duration

        if not isinstance(raw, str):
            self.problem("wait", "must be a duration such as 30m, 1h, 3d or P1W")
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.problem("wait", str(exc))
            return None

    # --- delivery policy and compliance ------------------------------------------------------

    def delivery_policy(self, doc: Mapping[str, Any], category: Any,
                        actions: tuple[Action, ...]) -> tuple[str | None, int, timedelta, bool, bool]:
        """``topic``, ``priority``, ``expires``, ``quiet_hours`` and ``budget``, and the
        compliance rules: a marketing email or SMS names the subscription topic people
        can leave; a marketing SMS keeps quiet hours; only transactional triggers
        may bypass the fatigue budget."""
        kinds = {action.kind for action in actions}
        topic = doc.get("topic")
        if topic is not None and not (isinstance(topic, str) and _TOPIC.fullmatch(topic)):
            self.problem("topic", "must be a topic name: letters, digits, '-' or '_' (e.g. offers)")
            topic = None
        if topic is not None and category in CATEGORIES and category != "marketing":
            self.problem("topic", "is for marketing triggers: transactional and internal messages "
                                  "do not depend on subscriptions")
        if category == "marketing" and "topic" not in doc and kinds & set(PERSONAL_CHANNELS):
            channels = " and ".join(sorted(kinds & set(PERSONAL_CHANNELS)))
            self.problem("topic", f"is required: a marketing {channels} needs the subscription topic people can "
                                  "leave (e.g. topic: offers), so every message can be unsubscribed from")
        priority = doc.get("priority", DEFAULT_PRIORITY)
        if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
            self.problem("priority", "must be a whole number from 1 (lowest) to 10 (highest)")
            priority = DEFAULT_PRIORITY
        expires = DEFAULT_EXPIRY
        if "expires" in doc:
            before = len(self.problems)
            parsed = self.wait(doc["expires"])
            if len(self.problems) > before:
                self.problems[-1] = FieldProblem("expires", self.problems[-1].rule)
            expires = parsed or DEFAULT_EXPIRY
        quiet_hours = doc.get("quiet_hours", True)
        if not isinstance(quiet_hours, bool):
            self.problem("quiet_hours", "must be true or false")
            quiet_hours = True
        elif not quiet_hours and category == "marketing" and "sms" in kinds:
            self.problem("quiet_hours", "cannot be switched off for a marketing SMS: texts that sell must "
                                        "respect the recipient's night (carriers and the law require it)")
        budget = doc.get("budget", True)
        if not isinstance(budget, bool):
            self.problem("budget", "must be true or false")
            budget = True
        elif not budget and category in CATEGORIES and category != "transactional":
            self.problem("budget", f"can be bypassed by transactional triggers only; a {category} trigger's "
                                   "messages count against the person's fatigue budget")
        return topic, priority, expires, quiet_hours, budget

    def unless(self, raw: Any, *, has_wait: bool, event_key: str) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not has_wait:
            self.problem("unless", "needs a wait: it calls off a waiting trigger when the event happens meanwhile")
        return self.event_keys(raw, "unless", event_key)

    def event_keys(self, raw: Any, path: str, event_key: str) -> tuple[str, ...]:
        """``{event: name}``, ``{type: page}`` or a list of them (exit goals)."""
        items = raw if isinstance(raw, list) else [raw]
        keys: list[str] = []
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if isinstance(raw, list) else path
            if not isinstance(item, Mapping) or len(item) != 1 or not ({"event", "type"} & set(item)):
                self.problem(where, "must be {event: <track event name>} or {type: page|screen|identify|group|alias}")
                continue
            value = item.get("event", item.get("type"))
            if "type" in item and value not in CALL_TYPES:
                self.problem(f"{where}.type", f"must be one of {', '.join(CALL_TYPES)}")
            elif not isinstance(value, str) or not value.strip() or len(value) > MAX_EVENT_NAME:
                self.problem(f"{where}.event", f"must be a track event's name (1-{MAX_EVENT_NAME} characters)")
            elif value == event_key:
                self.problem(where, "cannot be the event that starts the trigger")
            else:
                keys.append(value)
        return tuple(keys)

    def steps(self, raw: Any, own_event: str | None) -> tuple[Step, ...]:
        if not isinstance(raw, list) or not raw:
            self.problem("steps", "must be a list of steps, each {wait?, match?, then}")
            return ()
        if len(raw) > MAX_STEPS:
            self.problem("steps", f"must have at most {MAX_STEPS} steps")
        steps: list[Step] = []
        next_index = 0
        for number, item in enumerate(raw):
            path = f"steps[{number}]"
            if not isinstance(item, Mapping):
                self.problem(path, "must be a mapping: {wait?, match?, then}")
                continue
            self.unknown_keys(item, _STEP_KEYS, path, "a step field")
            wait = None
            if item.get("wait") is not None:
                before = len(self.problems)
                wait = self.wait(item["wait"])
                for problem in self.problems[before:]:
                    self.problems[self.problems.index(problem)] = FieldProblem(f"{path}.wait", problem.rule)
            elif number > 0:
                self.problem(f"{path}.wait", "is required after the first step: how long after the step before")
            match = None
            if item.get("match") is not None:
                before = len(self.problems)
                match, _ = self.match(item["match"])
                for problem in self.problems[before:]:
                    self.problems[self.problems.index(problem)] = FieldProblem(
                        f"{path}.{problem.field.removeprefix('when.')}", problem.rule)
            actions = self.then(item.get("then"), own_event, path=f"{path}.then", first_index=next_index)
            next_index += len(item.get("then") or []) if isinstance(item.get("then"), list) else 0
            steps.append(Step(index=number, wait=wait, match=match, actions=actions))
        return tuple(steps)

    def reentry(self, raw: Any) -> tuple[str, timedelta | None]:
        if raw is None or raw in REENTRY_RULES:
            return (raw or "every"), None
        if isinstance(raw, Mapping) and set(raw) == {"once_per"}:
            period = self.wait(raw["once_per"])
            if period is None and self.problems and self.problems[-1].field == "wait":
                self.problems[-1] = FieldProblem("reentry.once_per", self.problems[-1].rule)
            return "once_per", period
        self.problem("reentry", "must be every, once, or {once_per: <duration>} (e.g. {once_per: 30d})")
        return "every", None

    def count(self, raw: Any, dated: bool, broadcast: bool = False) -> CountRule | None:
        if raw is None:
            return None
        if broadcast:
            self.problem("when.count", "is not for broadcasts: they act on their audience at the scheduled time")
            return None
        if dated:
            self.problem("when.count", "is for event triggers (how many times within a window)")
            return None
        if not isinstance(raw, Mapping) or set(raw) != {"at_least", "within"}:
            self.problem("when.count", "must be {at_least: <n>, within: <duration>}, e.g. {at_least: 3, within: 7d}")
            return None
        at_least = raw["at_least"]
        if isinstance(at_least, bool) or not isinstance(at_least, int) or not 2 <= at_least <= 1000:
            self.problem("when.count.at_least", "must be a whole number from 2 to 1000")
            return None
        before = len(self.problems)
        within = self.wait(raw["within"])
        if within is None:
            if len(self.problems) > before:
                self.problems[-1] = FieldProblem("when.count.within", self.problems[-1].rule)
            return None
        return CountRule(at_least=at_least, within=within)

    # --- when -------------------------------------------------------------------------------

    def when(self, when: Any) -> tuple[str, Pattern | None, dict[str, Any] | None]:
        if not isinstance(when, Mapping):
            self.problem("when", "is required: {event: <track event name>} or {type: page|screen|identify|group|alias}")
            return "", None, None
        self.unknown_keys(when, _WHEN_KEYS, "when", "a when field")
        event_key = ""
        if sum(key in when for key in ("event", "type", "anniversary", "inactive", "schedule")) != 1:
            self.problem("when", "must have exactly one of event (a track event's name), type (page, screen, "
                                 "identify, group, alias), anniversary (a date trait), inactive (a silence) "
                                 "or schedule (a broadcast)")
        elif "schedule" in when:
            self.schedule_rule = self.schedule(when["schedule"])
            event_key = BROADCAST_KEY
            if "match" in when:
                self.problem("when.match", "is not for broadcasts: say who receives one with audience")
            if "audience" not in when:
                return event_key, None, None
            before = len(self.problems)
            match, source = self.match(when["audience"], ("profile",))
            for index in range(before, len(self.problems)):
                problem = self.problems[index]
                self.problems[index] = FieldProblem(problem.field.replace("when.match", "when.audience", 1),
                                                    problem.rule.replace("a date trigger's", "a broadcast's"))
            return event_key, match, source
        elif "anniversary" in when:
            self.anniversary_rule = self.anniversary(when["anniversary"])
            event_key = ANNIVERSARY_KEY
        elif "inactive" in when:
            self.inactivity_rule = self.inactive(when["inactive"])
            event_key = INACTIVE_KEY
        elif "event" in when:
            name = when["event"]
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_EVENT_NAME:
                self.problem("when.event", f"must be a track event's name (1-{MAX_EVENT_NAME} characters)")
            elif name.startswith("@"):
                self.problem("when.event", "must not start with '@' (reserved for date triggers)")
            elif name in CALL_TYPES or name == "track":
                self.problem("when.event", f"is a Segment call type: write when: {{type: {name}}} for {name} calls")
            else:
                event_key = name
        else:
            call_type = when["type"]
            if call_type == "track":
                self.problem("when.type", "track calls are matched by name: write when: {event: <event name>}")
            elif call_type not in CALL_TYPES:
                self.problem("when.type", f"must be one of {', '.join(CALL_TYPES)}")
            else:
                event_key = call_type
        if "audience" in when:
            self.problem("when.audience", "is for broadcasts (when.schedule): event triggers use match")
        roots = ("profile",) if event_key in (ANNIVERSARY_KEY, INACTIVE_KEY) else _MATCH_ROOTS
        match, source = self.match(when.get("match"), roots) if "match" in when else (None, None)
        return event_key, match, source

    def schedule(self, raw: Any) -> Any:
        from chalicelib.durations import parse_schedule

        if not isinstance(raw, str):
            self.problem("when.schedule", 'must be a schedule: "cron(0 9 24 12 ? *)" or "rate(7 days)"')
            return None
        try:
            return parse_schedule(raw)
        except ValueError as exc:
            self.problem("when.schedule", str(exc))
            return None

    def anniversary(self, raw: Any) -> Anniversary | None:
        path = "when.anniversary"
        if not isinstance(raw, Mapping):
            self.problem(path, "must be a mapping: {trait: birthday, at: \"09:00\"}")
            return None
        before = len(self.problems)
        self.unknown_keys(raw, _ANNIVERSARY_KEYS, path, "an anniversary field")
        trait = raw.get("trait")
        if not isinstance(trait, str) or not trait.strip() or len(trait) > MAX_EVENT_NAME:
            self.problem(f"{path}.trait", "is required: the name of the profile trait holding the date, e.g. birthday")
        at = self.local_time(raw.get("at", "09:00"), f"{path}.at")
        offset = self.offset(raw.get("offset"), f"{path}.offset")
        every = raw.get("every", "year")
        if every is not None and every not in _EVERY:
            self.problem(f"{path}.every", "must be year, month or none (a single occurrence)")
        months = raw.get("months", 0)
        if not isinstance(months, int) or isinstance(months, bool) or not -1200 <= months <= 1200:
            self.problem(f"{path}.months", "must be a whole number of months, e.g. 6")
        if len(self.problems) > before:
            return None
        return Anniversary(trait=trait, at=at or time(9, 0), offset=offset, every=_EVERY.get(every) if every else None,
                           months=months)

    def inactive(self, raw: Any) -> Inactivity | None:
        path = "when.inactive"
        if not isinstance(raw, Mapping):
            self.problem(path, "must be a mapping: {for: 30d} or {for: 30d, event: Order Completed, at: \"10:00\"}")
            return None
        before = len(self.problems)
        self.unknown_keys(raw, _INACTIVE_KEYS, path, "an inactive field")
        silence = None
        if not isinstance(raw.get("for"), str):
            self.problem(f"{path}.for", "is required: how long without events, e.g. 30d")
        else:
            from chalicelib.durations import parse_duration

            try:
                silence = parse_duration(raw["for"])
            except ValueError as exc:
                self.problem(f"{path}.for", str(exc))
            else:
                if silence < MIN_INACTIVITY:
                    self.problem(f"{path}.for", "must be at least 1h")
        event = raw.get("event")
        if event is not None and (not isinstance(event, str) or not event.strip() or len(event) > MAX_EVENT_NAME
                                  or event.startswith("@")):
            self.problem(f"{path}.event", f"must be an event's name (1-{MAX_EVENT_NAME} characters) or a call type")
        at = self.local_time(raw["at"], f"{path}.at") if "at" in raw else None
        if len(self.problems) > before or silence is None:
            return None
        return Inactivity(silence=silence, event=event, at=at)

    def local_time(self, raw: Any, path: str) -> time | None:
        if isinstance(raw, int) and not isinstance(raw, bool):
            self.problem(path, 'must be a local time in quotes, e.g. "10:00" (YAML reads 10:00 as a number)')
            return None
        match = _LOCAL_TIME.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            self.problem(path, 'must be a local time HH:MM, e.g. "09:00"')
            return None
        return time(int(match.group(1)), int(match.group(2)))

    def offset(self, raw: Any, path: str) -> timedelta:
        if raw is None:
            return timedelta(0)
        from chalicelib.durations import parse_duration

        text = raw.strip() if isinstance(raw, str) else ""
        sign = -1 if text.startswith("-") else 1
        try:
            if not text:
                raise ValueError("expected e.g. -7d (7 days before) or 1d (the day after)")
            return sign * parse_duration(text.lstrip("+-"))
        except ValueError as exc:
            self.problem(path, str(exc))
            return timedelta(0)

    def match(self, raw: Any,
              allowed_roots: tuple[str, ...] = _MATCH_ROOTS) -> tuple[Pattern | None, dict[str, Any] | None]:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                self.problem("when.match", "must be an event pattern (a mapping, or JSON text of one)")
                return None, None
        if not isinstance(raw, Mapping) or not raw:
            self.problem("when.match", "must be a non-empty EventBridge event pattern over event and profile, "
                                       "e.g. {event: {properties: {plan: [pro]}}}")
            return None, None
        roots = [key for key in raw if key not in allowed_roots]
        if roots and allowed_roots != _MATCH_ROOTS:
            self.problem(f"when.match.{roots[0]}", "is not matched against: a date trigger's pattern starts with "
                                                   "profile (the person), e.g. {profile: {traits: {plan: [pro]}}}")
            return None, None
        if roots:
            self.problem(f"when.match.{roots[0]}", "is not matched against: patterns start with event "
                                                   "(the Segment call) or profile (the person), "
                                                   "e.g. {event: {properties: {plan: [pro]}}}")
            return None, None
        try:
            from chalicelib import patterns
        except ImportError:  # pragma: no cover - the matcher ships with the engine
            self.problem("when.match", "cannot be checked: chalicelib.patterns is not installed")
            return None, None
        source = json.loads(json.dumps(raw))
        try:
            return patterns.compile_pattern(source), source
        except patterns.InvalidPattern as exc:
            self.problem("when.match", f"is not a valid event pattern: {exc}")
            return None, None

    # --- then -------------------------------------------------------------------------------

    def then(self, then: Any, own_event: str | None, path: str = "then", first_index: int = 0) -> tuple[Action, ...]:
        where = path
        if not isinstance(then, list) or not then:
            self.problem(where, "is required: a list of actions, e.g. - email: {template: welcome, from: ...}")
            return ()
        if len(then) > MAX_ACTIONS:
            self.problem(where, f"must have at most {MAX_ACTIONS} actions")
        actions = []
        for index, item in enumerate(then):
            path = f"{where}[{index}]"
            if not isinstance(item, Mapping) or len(item) != 1:
                self.problem(path, f"must be one action: a mapping with one key ({', '.join(ACTION_KINDS)})")
                continue
            ((kind, params),) = item.items()
            if kind not in ACTION_KINDS:
                self.problem(_join(path, str(kind)), f"is not an action (expected one of {', '.join(ACTION_KINDS)})")
                continue
            path = _join(path, kind)
            if not isinstance(params, Mapping):
                self.problem(path, "must be a mapping of the action's parameters")
                continue
            before = len(self.problems)
            _ACTION_CHECKS[kind](self, params, path, own_event)
            if len(self.problems) == before:
                actions.append(Action(kind=kind, params=copy.deepcopy(dict(params)), index=first_index + index))
        return tuple(actions)

    def keys(self, params: Mapping[str, Any], path: str, allowed: tuple[str, ...], required: tuple[str, ...],
             kind: str) -> None:
        self.unknown_keys(params, allowed, path, f"a parameter of {kind}")
        for key in required:
            if params.get(key) in (None, ""):
                self.problem(_join(path, key), f"is required for {kind}")

    def template(self, params: Mapping[str, Any], path: str, kind: str) -> None:
        name = params.get("template")
        if name is None:
            return
        path = _join(path, "template")
        if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            self.problem(path, f"must be a template id ({ID_RULE})")
            return
        if self.templates is None:
            return
        if name not in self.templates:
            self.problem(path, f"names no known template: add templates/{name}.yaml or PUT /v1/templates/{name} first")
            return
        if isinstance(self.templates, Mapping):
            channel = self.templates[name]
            if channel != TEMPLATE_CHANNEL[kind]:
                self.problem(path, f"is {_a(channel)} template, but {kind} needs {_a(TEMPLATE_CHANNEL[kind])} template")

    def template_or_text(self, params: Mapping[str, Any], path: str, kind: str) -> None:
        if ("template" in params) == ("text" in params):
            self.problem(path, f"{kind} needs exactly one of template or text")
            return
        if "template" in params:
            self.template(params, path, kind)
            return
        text = params["text"]
        if not isinstance(text, str) or not text.strip():
            self.problem(_join(path, "text"), "must be a non-empty string")
        elif self.check_liquid:
            reason = liquid_problem(text)
            if reason:
                self.problem(_join(path, "text"), reason)

    def literal(self, value: Any, path: str) -> None:
        """Parameters that are used as written must not look like Liquid."""
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            self.problem(path, "is used as written, Liquid is not rendered here (use a template)")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.literal(item, _join(path, str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.literal(item, f"{path}[{index}]")

    def address(self, value: Any, path: str, *, display_name: bool) -> None:
        if not isinstance(value, str):
            self.problem(path, "must be an email address")
            return
        name, address = parseaddr(value)
        if not _EMAIL.fullmatch(address) or (name and not display_name) or (not name and value.strip() != address):
            form = 'an email address, e.g. "Shop <orders@example.com>"' if display_name else "an email address"
            self.problem(path, f"must be {form}")


def _check_email(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("template", "from", "reply_to", "to"), ("template", "from"), "email")
    checker.template(params, path, "email")
    if params.get("from"):
        checker.address(params["from"], _join(path, "from"), display_name=True)
    if "reply_to" in params:
        checker.address(params["reply_to"], _join(path, "reply_to"), display_name=True)
    if "to" in params:
        checker.address(params["to"], _join(path, "to"), display_name=False)


def _check_sms(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("template", "text", "to"), (), "sms")
    checker.template_or_text(params, path, "sms")
    if "to" in params and not (isinstance(params["to"], str) and _E164.fullmatch(params["to"])):
        checker.problem(_join(path, "to"), "must be a phone number in E.164 form, e.g. +14155550100")


def _check_alert(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("topic", "template", "text"), ("topic",), "alert")
    topic = params.get("topic")
    if topic not in (None, "") and not (isinstance(topic, str) and _TOPIC.fullmatch(topic)):
        checker.problem(_join(path, "topic"), "must be a topic name: letters, digits, '-' or '_'")
    checker.template_or_text(params, path, "alert")


def _check_webhook(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("url", "template", "secret_env", "timeout_seconds"), ("url",), "webhook")
    checker.template(params, path, "webhook")
    url = params.get("url")
    if url not in (None, ""):
        problem = _url_problem(url)
        if problem:
            checker.problem(_join(path, "url"), problem)
    if "secret_env" in params and not (isinstance(params["secret_env"], str)
                                       and _ENV_NAME.fullmatch(params["secret_env"])):
        checker.problem(_join(path, "secret_env"), "must name an environment variable (A-Z, 0-9, _) that holds "
                                                   "the signing secret")
    if "timeout_seconds" in params:
        timeout = params["timeout_seconds"]
        if not _number(timeout) or not 0 < timeout <= MAX_WEBHOOK_TIMEOUT:
            checker.problem(_join(path, "timeout_seconds"),
                            f"must be a number of seconds above 0 and at most {MAX_WEBHOOK_TIMEOUT}")


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return "must be an https URL"
    if "{{" in url or "{%" in url:
        return "is used as written, Liquid is not rendered here"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "must be an https URL"
    if not host:
        return "must be an https URL with a host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and host in _LOCAL_HOSTS:
        return None
    return "must be an https URL (http is allowed only for localhost)"


def _check_update_profile(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("set", "add_tags", "remove_tags", "increment"), (), "update_profile")
    if not any(params.get(key) for key in ("set", "add_tags", "remove_tags", "increment")):
        checker.problem(path, "must change something: set, add_tags, remove_tags or increment")
    traits_set = params.get("set") or {}
    if "set" in params:
        if not isinstance(params["set"], Mapping):
            checker.problem(_join(path, "set"), "must be a mapping of trait name to value")
            traits_set = {}
        else:
            for name in traits_set:
                if not str(name).strip():
                    checker.problem(_join(path, "set"), "trait names must be non-empty")
            checker.literal(traits_set, _join(path, "set"))
    tags: dict[str, list[str]] = {}
    for key in ("add_tags", "remove_tags"):
        if key not in params:
            continue
        value = params[key]
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            checker.problem(_join(path, key), "must be a list of non-empty tag names")
        else:
            tags[key] = value
    both = sorted(set(tags.get("add_tags", ())) & set(tags.get("remove_tags", ())))
    if both:
        checker.problem(_join(path, "remove_tags"), f"removes a tag it also adds: {', '.join(both)}")
    if "increment" in params:
        increments = params["increment"]
        if not isinstance(increments, Mapping):
            checker.problem(_join(path, "increment"), "must be a mapping of trait name to a number")
        else:
            for name, amount in increments.items():
                if not _number(amount):
                    checker.problem(_join(path, f"increment.{name}"), "must be a number")
                elif isinstance(traits_set, Mapping) and name in traits_set:
                    checker.problem(_join(path, f"increment.{name}"),
                                    "is also in set: set it or increment it, not both")


def _check_emit(checker: _Checker, params: Mapping[str, Any], path: str, own_event: str | None) -> None:
    checker.keys(params, path, ("event", "properties"), ("event",), "emit")
    event = params.get("event")
    if event not in (None, ""):
        if not isinstance(event, str) or len(event) > MAX_EVENT_NAME:
            checker.problem(_join(path, "event"), f"must be a track event's name (1-{MAX_EVENT_NAME} characters)")
        elif event == own_event:
            checker.problem(_join(path, "event"), "is the event this trigger listens for: it would set itself off")
        else:
            checker.literal(event, _join(path, "event"))
    if "properties" in params:
        if not isinstance(params["properties"], Mapping):
            checker.problem(_join(path, "properties"), "must be a mapping")
        else:
            checker.literal(params["properties"], _join(path, "properties"))


_ACTION_CHECKS: dict[str, Callable[[_Checker, Mapping[str, Any], str, str | None], None]] = {
    "email": _check_email,
    "sms": _check_sms,
    "alert": _check_alert,
    "webhook": _check_webhook,
    "update_profile": _check_update_profile,
    "emit": _check_emit,
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _a(channel: str) -> str:
    return f"an {channel}" if channel in ("email", "sms", "alert") else f"a {channel}"
