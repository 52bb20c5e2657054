"""Every AWS call the handlers make is granted to their function's role, on its resource.

Chalice's policy generator cannot see PynamoDB's calls (and is off: see
.chalice/config.json), so the grants are written by hand in
infra/template.yaml. Rather than list the actions here a second time, the
calls are recorded: representative flows run through ``chalice.test.Client``
against the stack moto creates from the same template, every botocore call is
caught, and each one's IAM action and resource ARN must be allowed by the
policies of the merged template that apply to the role of the function that
made it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import boto3
import botocore.client
import pytest
import yaml
from chalice.test import Client
from chalice.utils import to_cfn_resource_name

from tests.integration.conftest import admin_headers, post, stack  # noqa: F401 (stack is a fixture)
from tests.integration.pipeline import Pipeline
from tests.packaging import iam
from tests.packaging.conftest import functions_of

ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "nudge-test"  # the stack tests/integration/conftest.py creates


class Recorder:
    """Every botocore call made while a function runs, by the function's logical id."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
        self.function: str | None = None

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
            # Handler threads (parallel puts) see the same function: flows run one at a time.
            if recorder.function is not None:
                prefix = client.meta.service_model.signing_name
                recorder.calls[recorder.function].append((prefix, operation, params))
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)


def function_id(template: dict[str, Any], handler: str) -> str:
    """The template's logical id of the function Chalice made for ``handler``."""
    functions = functions_of(template)
    name = to_cfn_resource_name(handler) if handler != "api_handler" else "APIHandler"
    assert name in functions, f"no function {name} in the template: {sorted(functions)}"
    return name


def run_flows(client: Client, recorder: Recorder, template: dict[str, Any]) -> None:
    api = function_id(template, "api_handler")
    bus = function_id(template, "on_bus_event")
    with recorder.running(api):
        # An anonymous visitor: stored links are looked up, an anonymous profile made.
        ok(post(client, "/v1/page", {"anonymousId": "a1", "name": "Pricing", "messageId": "p1"}))
        # They sign up: the anonymous profile is merged into theirs and removed, a link written.
        ok(post(client, "/v1/identify", {"anonymousId": "a1", "userId": "u1", "messageId": "i1",
                                         "traits": {"email": "u1@example.com"},
                                         "timestamp": "2026-12-01T10:00:00Z"}))
        # A batch, with and without client timestamps (the dedupe marker path).
        ok(post(client, "/v1/batch", {"batch": [
            {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "t1",
             "timestamp": "2026-12-01T10:01:00Z"},
            {"type": "track", "userId": "u1", "event": "Order Shipped", "messageId": "t2"},
        ]}))
        ok(client.http.get("/v1/profiles/u1", headers=admin_headers()))
        ok(client.http.get("/v1/profiles/u1/events?limit=2", headers=admin_headers()))
        ok(client.http.get("/health"))
        # Definitions: a template and a trigger that uses it (the shipped examples), read, listed, deleted.
        for kind, name in (("templates", "order-confirmation"), ("triggers", "order-confirmation")):
            definition = yaml.safe_load((ROOT / kind / f"{name}.yaml").read_text())
            ok(client.http.put(f"/v1/{kind}/{name}", headers={**admin_headers(), "Content-Type": "application/json"},
                               body=json.dumps(definition)))
            ok(client.http.get(f"/v1/{kind}/{name}?versions=true", headers=admin_headers()))
            ok(client.http.get(f"/v1/{kind}", headers=admin_headers()))
        ok(client.http.delete("/v1/triggers/order-confirmation", headers=admin_headers()))
    # On arrival and delivery: the pricing-page trigger alerts sales and raises the lead score,
    # the order trigger sends email; the first send (and the first marketing one) is throttled,
    # so its claim is released.
    for kind, name in (("templates", "pricing-page-alert"), ("triggers", "pricing-page-alert"),
                       ("templates", "order-confirmation"), ("triggers", "order-confirmation"),
                       ("templates", "abandoned-cart"), ("triggers", "abandoned-cart"),
                       ("templates", "birthday"), ("triggers", "birthday"),
                       ("templates", "welcome-1"), ("templates", "welcome-2"), ("templates", "welcome-3"),
                       ("triggers", "welcome-series"), ("triggers", "pricing-hot-lead")):
        definition = yaml.safe_load((ROOT / kind / f"{name}.yaml").read_text())
        ok(client.http.put(f"/v1/{kind}/{name}", headers={**admin_headers(), "Content-Type": "application/json"},
                           body=json.dumps(definition)))
    ok(post(client, "/v1/page", {"userId": "u1", "name": "Pricing", "properties": {"path": "/pricing"}}))
    ok(post(client, "/v1/track", {"userId": "u1", "event": "Order Completed", "messageId": "t9",
                                  "properties": {"order_id": "9", "total": 10, "products": []}}))
    with recorder.running(api):
        ok(client.http.get("/v1/profiles/u1/messages", headers=admin_headers()))
        ok(client.http.get("/v1/profiles/u1/decisions", headers=admin_headers()))
    pipeline = Pipeline(client, stack_env(), invoking=lambda name: recorder.running(function_id(template, name)))
    throttle_first_email()
    ok(post(client, "/v1/track", {"userId": "u1", "event": "Product Added", "properties": {"name": "Boots"}}))
    # A sequence entered twice (the second entry is refused by its re-entry rule) and a count reached.
    for signup in ("su1", "su2"):
        ok(post(client, "/v1/track", {"userId": "u1", "event": "Signed Up", "messageId": signup}))
    for _ in range(3):
        ok(post(client, "/v1/page", {"userId": "u1", "name": "Pricing", "properties": {"path": "/pricing"}}))
    # A birthday tomorrow: the sweep below greets it and sets next year's.
    from datetime import datetime, timedelta, timezone

    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    ok(post(client, "/v1/identify", {"userId": "u1", "traits": {"birthday": f"--{tomorrow:%m-%d}"}}))
    # A broadcast (the holiday offer, hourly here): the first sweep sees it, a later one runs it.
    ok(client.http.put("/v1/templates/holiday-offer", headers={**admin_headers(), "Content-Type": "application/json"},
                       body=json.dumps(yaml.safe_load((ROOT / "templates/holiday-offer.yaml").read_text()))))
    holiday = yaml.safe_load((ROOT / "triggers/holiday-offer.yaml").read_text())
    holiday["when"]["schedule"] = "rate(1 hour)"
    ok(client.http.put("/v1/triggers/holiday-offer", headers={**admin_headers(), "Content-Type": "application/json"},
                       body=json.dumps(holiday)))
    pipeline.run()
    assert pipeline.failures, "the throttled send was not retried"
    # Later the schedule sweeps the cart reminder's timer and the birthday's.
    from chalicelib import clock

    clock.advance(timedelta(days=2))
    try:
        tick = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                               resources=[])
        with recorder.running(function_id(template, "sweep_timers")):
            assert client.lambda_.invoke("sweep_timers", tick).payload["acted"] >= 1
        clock.advance(timedelta(hours=2))
        with recorder.running(function_id(template, "sweep_timers")):
            assert client.lambda_.invoke("sweep_timers", tick).payload["due"] >= 16  # the broadcast's pages
    finally:
        clock.reset()
    with recorder.running(api):
        ok(client.http.get("/v1/broadcasts/holiday-offer/runs", headers=admin_headers()))
    with recorder.running(bus):
        for detail_type, detail in (
            ("page", {"anonymousId": "a2", "name": "Home", "messageId": "bp1"}),
            ("identify", {"anonymousId": "a2", "userId": "u2", "messageId": "bi1"}),
            ("batch", {"batch": [{"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "bt1"}]}),
        ):
            event = client.events.generate_cw_event(source="tests", detail_type=detail_type, detail=detail,
                                                    resources=[], region="us-east-1")
            response = client.lambda_.invoke("on_bus_event", event)
            assert response.payload["accepted"] >= 1, response.payload
        # A retried event whose sentAt correction moved its time: the logged copy is read back.
        timed = {"userId": "u2", "event": "Plan Viewed", "messageId": "bt2", "timestamp": "2026-12-01T10:00:00Z",
                 "sentAt": "2026-12-01T10:00:05Z"}
        for attempt, at in enumerate(("2026-12-01T10:00:06Z", "2026-12-01T10:07:06Z")):
            event = client.events.generate_cw_event(source="tests", detail_type="track", detail=timed,
                                                    resources=[], region="us-east-1")
            event["time"] = at
            response = client.lambda_.invoke("on_bus_event", event)
            assert response.payload["accepted"] == (1 if attempt == 0 else 0), response.payload
    # Export and erasure of u1, who by now has events, messages, decisions, timers and
    # (set here, outside the recording) subscriptions with their consent history.
    from chalicelib import dependencies
    from chalicelib.consent import Consent

    dependencies.consent_store().set_preferences("user:u1", {"email:offers": Consent(True, "api", "2026-12-01T10:00:00Z")})
    with recorder.running(api):
        ok(client.http.get("/v1/profiles/u1/export", headers=admin_headers()))
        ok(client.http.delete("/v1/profiles/u1", headers=admin_headers()))

    run_subscription_flows(client, recorder, template)
    run_feedback_flows(client, recorder, template)


def run_subscription_flows(client: Client, recorder: Recorder, template: dict[str, Any]) -> None:
    """The unsubscribe link and one-click POST, the preferences page (fresh consent lifting an
    erasure's suppression), the admin subscriptions API, and mail to the unsubscribe address
    carrying a link made for a visitor who has since signed in."""
    from chalicelib import dependencies
    from chalicelib.clock import utcnow
    from chalicelib.settings import get_settings
    from chalicelib.unsubscribe_tokens import sign

    ok(post(client, "/v1/page", {"anonymousId": "a5", "name": "Home"}))
    ok(post(client, "/v1/identify", {"anonymousId": "a5", "userId": "u5", "traits": {"email": "u5@example.com"}}))
    dependencies.consent_store().suppress("u5@example.com", "marketing", "erased", "2026-12-01T10:00:00.000Z")
    keys = get_settings().unsubscribe_keys
    token = sign(keys, "user:u5", "email", "offers", utcnow())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with recorder.running(function_id(template, "api_handler")):
        ok(client.http.get(f"/v1/unsubscribe?token={token}"))
        ok(client.http.post(f"/v1/unsubscribe?token={token}", headers=form, body="List-Unsubscribe=One-Click"))
        ok(client.http.get(f"/v1/preferences?token={token}"))
        ok(client.http.post(f"/v1/preferences?token={token}", headers=form, body="topic=email:news"))
        assert dependencies.consent_store().suppression("u5@example.com") is None
        ok(client.http.get("/v1/topics", headers=admin_headers()))
        ok(client.http.put("/v1/profiles/u5/subscriptions", headers={**admin_headers(), "Content-Type":
                           "application/json"}, body=json.dumps({"topics": {"email:offers": True}})))
        ok(client.http.get("/v1/profiles/u5/subscriptions", headers=admin_headers()))
    mail = json.dumps({"notificationType": "Received", "mail": {"commonHeaders": {
        "subject": "unsubscribe " + sign(keys, "anon:a5", "email", None, utcnow())}}})
    with recorder.running(function_id(template, "on_unsubscribe_mail")):
        result = client.lambda_.invoke("on_unsubscribe_mail", client.events.generate_sns_event(message=mail))
        assert result.payload["changed"] == ["email:*"], result.payload


def run_feedback_flows(client: Client, recorder: Recorder, template: dict[str, Any]) -> None:
    """SES feedback about a message in the ledger: an untagged send (its trigger read from the
    ledger), a hard bounce that passes the reputation limit, whose first alert fails (the pause
    is cleared for the retry); then the trigger's stats, the reputation, and resuming."""
    import os

    from chalicelib import dependencies
    from chalicelib.channels import AwsChannels
    from chalicelib.errors import SendRetryable
    from chalicelib.message_ref import message_ref
    from chalicelib.ports import MessageRecord
    from infra.ses_events import event, mail_object

    at = "2026-12-02T10:00:00.000Z"
    dependencies.ledger().claim(MessageRecord("user:u6", "order-confirmation#o6#0", "order-confirmation", "email",
                                              "sent", at, to="u6@example.com"))
    mail = mail_object(message_id="ses-u6", source="orders@example.com", destination=["u6@example.com"],
                       headers=[{"name": "X-Nudge-Message", "value": message_ref("user:u6",
                                                                                 "order-confirmation#o6#0")}],
                       common_headers={}, tags={}, timestamp=at, account="123456789012", region="us-east-1")
    original, calls = AwsChannels.send_alert, []

    def send_alert(self: Any, *args: Any) -> str:
        calls.append(args)
        if len(calls) == 1:
            raise SendRetryable("Throttling: Rate exceeded")
        return original(self, *args)

    os.environ["NUDGE_REPUTATION_MIN_SENDS"] = "1"
    AwsChannels.send_alert = send_alert  # type: ignore[method-assign]
    try:
        with recorder.running(function_id(template, "on_feedback")):
            for record in (event("Send", mail, at), event("Bounce", mail, at, ["u6@example.com"])):
                sns_event = client.events.generate_sns_event(message=json.dumps(record))
                try:
                    client.lambda_.invoke("on_feedback", sns_event)
                except SendRetryable:
                    client.lambda_.invoke("on_feedback", sns_event)  # Lambda's retry
        assert len(calls) == 2 and dependencies.feedback_store().pause_state()
        with recorder.running(function_id(template, "api_handler")):
            ok(client.http.get("/v1/triggers/order-confirmation/stats?days=400", headers=admin_headers()))
            ok(client.http.get("/v1/reputation", headers=admin_headers()))
            ok(client.http.post("/v1/reputation/resume", headers=admin_headers()))
    finally:
        AwsChannels.send_alert = original  # type: ignore[method-assign]
        del os.environ["NUDGE_REPUTATION_MIN_SENDS"]


def stack_env() -> dict[str, str]:
    import os

    from chalicelib.settings import TABLE_VARIABLES

    names = [*TABLE_VARIABLES, "NUDGE_SEND_QUEUE_URL", "NUDGE_ALERTS_TOPIC_ARN", "NUDGE_EVENTS_TABLE"]
    return {name: os.environ[name] for name in names if name in os.environ}


def throttle_first_email() -> None:
    """SES answers the first send, and the first marketing send (one with a
    List-Unsubscribe header), with Throttling, as it does under a sending-rate
    limit: both claims are released, and the marketing one gives its budget slot back."""
    from chalicelib.channels import AwsChannels
    from chalicelib.errors import SendRetryable

    original = AwsChannels.send_email
    calls: list[bool] = []

    def send_email(self: Any, *args: Any, **kwargs: Any) -> str:
        marketing = "List-Unsubscribe" in (kwargs.get("headers") or args[-1])
        throttled = not calls or (marketing and marketing not in calls)
        calls.append(marketing)
        if throttled:
            raise SendRetryable("Throttling: Maximum sending rate exceeded.")
        return original(self, *args, **kwargs)

    AwsChannels.send_email = send_email  # type: ignore[method-assign]  # restored by the fixture


def ok(response: Any) -> None:
    assert response.status_code < 300, (response.status_code, response.body)


@pytest.fixture
def recorded(quiet_moto: None, stack: dict[str, str], merged_template: dict[str, Any],
             monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    from app import app

    from chalicelib.channels import AwsChannels

    monkeypatch.setattr(AwsChannels, "send_email", AwsChannels.send_email)  # restored after the flows
    recorder = Recorder()
    recorder.install(monkeypatch)
    with Client(app, stage_name="local") as client:
        run_flows(client, recorder, merged_template)
    return recorder.calls


def test_every_call_the_handlers_make_is_granted(recorded: dict[str, list[tuple[str, str, dict[str, Any]]]],
                                                 merged_template: dict[str, Any]) -> None:
    session = boto3.session.Session()
    resolve = iam.Resolver(merged_template, session, STACK_NAME)
    functions = functions_of(merged_template)
    assert set(recorded) == set(functions)
    denied = []
    for function, calls in recorded.items():
        assert calls, f"{function} made no AWS call: the flows test nothing"
        statements = iam.statements_for_role(merged_template, iam.role_of(functions[function]))
        for prefix, operation, params in calls:
            for permission in iam.permissions_for(prefix, operation, params, resolve.region, resolve.account):
                if not iam.allows(statements, permission, resolve):
                    denied.append(f"{function}: {permission.action} on {permission.resource or 'its resource'}")
    assert not denied, "not granted in infra/template.yaml:\n" + "\n".join(sorted(set(denied)))


def test_no_dynamodb_action_is_granted_that_no_call_needs(
        recorded: dict[str, list[tuple[str, str, dict[str, Any]]]], merged_template: dict[str, Any]) -> None:
    """Least privilege, for DynamoDB: each granted action on a table is one the flows used there."""
    session = boto3.session.Session()
    resolve = iam.Resolver(merged_template, session, STACK_NAME)
    functions = functions_of(merged_template)
    unused = []
    for function, calls in recorded.items():
        used = {(p.action.lower(), p.resource) for prefix, operation, params in calls
                for p in iam.permissions_for(prefix, operation, params, resolve.region, resolve.account)}
        for statement in iam.statements_for_role(merged_template, iam.role_of(functions[function])):
            for action in iam._listed(statement["Action"]):
                if not action.lower().startswith("dynamodb:"):
                    continue
                for resource in iam._listed(statement["Resource"]):
                    if _is_stream(resource):
                        continue  # Lambda's stream poller reads with the function's role, not the handler
                    if (action.lower(), resolve(resource)) not in used:
                        unused.append(f"{function}: {action} on {resource}")
    assert not unused, "granted but never called by the flows (remove, or add a flow that needs it):\n" + \
        "\n".join(unused)


def _is_stream(resource: Any) -> bool:
    return isinstance(resource, dict) and resource.get("Fn::GetAtt", [None, None])[1] == "StreamArn"


def test_every_function_role_gets_nudges_grants(merged_template: dict[str, Any]) -> None:
    """A new handler gets its own role from Chalice with logging only: it needs a policy in infra/."""
    resources = merged_template["Resources"]
    for name, function in functions_of(merged_template).items():
        role = iam.role_of(function)
        attached = [policy for policy, r in resources.items() if r["Type"] == "AWS::IAM::Policy"
                    and {"Ref": role} in r["Properties"].get("Roles", [])]
        assert attached, f"{name}'s role {role} has no policy from infra/template.yaml"


def test_dead_letter_queues_can_be_written_by_their_function(merged_template: dict[str, Any]) -> None:
    """Lambda sends a failed asynchronous invocation to the dead-letter queue with the function's role."""
    checked = 0
    for name, function in functions_of(merged_template).items():
        target = (function.get("DeadLetterQueue") or {}).get("TargetArn")
        if not target:
            continue
        role = iam.role_of(function)
        statements = iam.statements_for_role(merged_template, role)
        assert any(s["Effect"] == "Allow" and "sqs:SendMessage" in iam._listed(s["Action"])
                   and target in iam._listed(s["Resource"]) for s in statements), name
        # Lambda refuses to create the function unless the grant is already there.
        resource = merged_template["Resources"][name]
        grants = {policy for policy, r in merged_template["Resources"].items() if r["Type"] == "AWS::IAM::Policy"
                  and {"Ref": role} in r["Properties"].get("Roles", [])}
        assert grants & set(iam._listed(resource.get("DependsOn", []))), f"{name} must DependsOn its role's policy"
        checked += 1
    assert checked


def test_the_recording_sees_pynamodb_calls(quiet_moto: None, stack: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder catches what PynamoDB sends (it calls botocore's client directly)."""
    from chalicelib import dependencies

    recorder = Recorder()
    recorder.install(monkeypatch)
    with recorder.running("probe"):
        dependencies.key_store().kind_of("no-such-key")
    assert [(p, o) for p, o, _ in recorder.calls["probe"]] == [("dynamodb", "GetItem")]


