"""Fault injection (infra/faults.py), and the engine when AWS fails it half-way:
a retried request still brings its traits, a throttled SNS text is retried,
and a claim is never left behind by a write that failed after the outcome was known."""
from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chalicelib import channels as channels_module
from chalicelib.channels import AwsChannels
from chalicelib.deliver import deliver
from chalicelib.errors import SendRejected, SendRetryable, StorageUnavailable
from chalicelib.evaluate import evaluate
from chalicelib.ingest import ingest
from chalicelib.profiles import apply_events, new_profile
from chalicelib.segment import iso, parse_batch, parse_call
from chalicelib.settings import get_settings
from chalicelib.templates import parse_template
from chalicelib.triggers import parse_trigger
from infra.faults import ERRORS, FaultInjector, FaultPlan, FaultsRefused, ProcessDied, Redelivery
from tests.fakes import MemoryChannels, MemoryDefinitions, MemoryEventLog, MemoryLedger, MemoryProfileStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
LIMIT = 32 * 1024


# -- the plan --------------------------------------------------------------------------------------


def test_the_local_stack_reads_the_plan_from_its_environment():
    plan = FaultPlan.from_env({"NUDGE_FAULT_RATE": "0.1", "NUDGE_FAULT_SEED": "42",
                               "NUDGE_FAULT_DIE_AFTER_SEND": "0.01", "NUDGE_DUPLICATE_DELIVERY": "1"})
    assert plan == FaultPlan(rate=0.1, seed=42, die_after_send=0.01, duplicates=1.0)
    assert plan.enabled
    assert not FaultPlan.from_env({}).enabled


@pytest.mark.parametrize("name, value", [("NUDGE_FAULT_RATE", "ten percent"), ("NUDGE_FAULT_RATE", "1.5"),
                                         ("NUDGE_DUPLICATE_DELIVERY", "-1"), ("NUDGE_FAULT_SEED", "x")])
def test_a_bad_setting_is_refused_with_its_name(name, value):
    with pytest.raises(ValueError, match=name):
        FaultPlan.from_env({name: value})


def test_faults_never_start_inside_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "nudge-prod-on_send")
    with pytest.raises(FaultsRefused):
        with FaultInjector(FaultPlan(rate=0.5)):
            pass


# -- failing calls ---------------------------------------------------------------------------------


def stubbed(service: str, operation: str, answer: dict, times: int) -> tuple[object, Stubber]:
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for _ in range(times):
        stubber.add_response(operation, answer)
    stubber.activate()
    return client, stubber


def test_an_armed_call_fails_with_the_services_own_throttling_or_5xx_error():
    sns, _ = stubbed("sns", "publish", {"MessageId": "m"}, 0)
    codes = set()
    with FaultInjector(FaultPlan(rate=1.0, seed=3)) as faults, faults.armed():
        for _ in range(40):
            with pytest.raises(ClientError) as failure:
                sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="hi")
            error = failure.value.response
            codes.add((error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]))
    assert codes == {("Throttled", 429), ("InternalError", 500)} == {*ERRORS["sns"][0], ERRORS["sns"][1]}
    assert faults.stats.total_faults == 40


def test_calls_outside_an_armed_block_never_fail():
    sqs, stubber = stubbed("sqs", "get_queue_url", {"QueueUrl": "https://q"}, 50)
    with FaultInjector(FaultPlan(rate=1.0)) as faults:
        for _ in range(50):
            assert sqs.get_queue_url(QueueName="q")["QueueUrl"] == "https://q"
    assert faults.stats.armed_calls == 0
    stubber.assert_no_pending_responses()


def failures(seed, calls=300, rate=0.1):
    sqs, _ = stubbed("sqs", "get_queue_url", {"QueueUrl": "https://q"}, calls)
    pattern = []
    with FaultInjector(FaultPlan(rate=rate, seed=seed)) as faults, faults.armed():
        for _ in range(calls):
            try:
                sqs.get_queue_url(QueueName="q")
                pattern.append(None)
            except ClientError as exc:
                pattern.append(exc.response["Error"]["Code"])
    return pattern


def test_the_same_seed_fails_the_same_calls_and_another_seed_others():
    first, again, other = failures(seed=11), failures(seed=11), failures(seed=12)
    assert first == again
    assert first != other
    failed = sum(code is not None for code in first)
    assert 15 <= failed <= 45  # about one call in ten of 300
    assert set(first) - {None} <= {"RequestThrottled", "InternalError"}


def test_a_process_can_die_after_the_provider_accepted_a_message(monkeypatch):
    published = []

    class FakeSns:
        def publish(self, **request):
            published.append(request)
            return {"MessageId": f"sns-{len(published)}"}

    monkeypatch.setattr(channels_module, "client", lambda service: FakeSns())
    monkeypatch.setenv("NUDGE_ALERTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:alerts")
    channels = AwsChannels(get_settings())
    with FaultInjector(FaultPlan(die_after_send=1.0, seed=1)) as faults:
        assert channels.send_alert("sales", "Lead", "text") == "sns-1"  # not armed: no death
        with faults.armed(), pytest.raises(ProcessDied) as died:
            channels.send_alert("sales", "Lead", "text")
    assert not isinstance(died.value, (SendRetryable, SendRejected))
    assert len(published) == 2, "the second alert went out before the process died"
    assert faults.stats.died == [("alert", "sns-2")]


def test_redelivery_repeats_a_share_of_items_two_or_three_times_in_a_shuffled_order():
    every = Redelivery(1.0, seed=5)
    extra = [every.copies() for _ in range(200)]
    assert set(extra) == {1, 2}
    assert Redelivery(0.0).copies() == 0
    some = Redelivery(0.3, seed=5)
    repeated = sum(some.copies() > 0 for _ in range(1000))
    assert 220 <= repeated <= 380
    items = list(range(20))
    shuffled = Redelivery(0.3, seed=9).shuffled(items)
    assert sorted(shuffled) == items and shuffled != items
    assert Redelivery(0.3, seed=9).shuffled(items) == shuffled


# -- the engine under faults -----------------------------------------------------------------------


class FlakyProfileStore(MemoryProfileStore):
    """Profile writes fail while ``failing`` is above zero (throttled)."""

    def __init__(self, failing: int = 0) -> None:
        super().__init__()
        self.failing = failing

    def save(self, profile):
        if self.failing:
            self.failing -= 1
            raise StorageUnavailable("throttled")
        return super().save(profile)


def identify(message_id="id-1", **traits):
    return parse_call("identify", {"userId": "ana", "messageId": message_id, "timestamp": "2026-12-02T11:00:00Z",
                                   "traits": traits}, NOW, LIMIT)


def test_a_retried_identify_brings_its_traits_when_the_first_attempt_failed_after_logging():
    # Given an identify whose profile write failed after the event was logged (the API answered 503)
    log, profiles = MemoryEventLog(), FlakyProfileStore(failing=1)
    with pytest.raises(StorageUnavailable):
        ingest([identify(email="ana@example.com")], log, profiles)
    assert profiles.get("user:ana") is None
    # When the client retries it with the same messageId
    result = ingest([identify(email="ana@example.com")], log, profiles)
    # Then it is not stored again, but the person now has their email address
    assert (result.accepted, result.duplicates, len(log.items)) == (0, 1, 1)
    person = profiles.get("user:ana")
    assert person.traits["email"] == "ana@example.com"
    assert person.counters["identify"].count == 1


def test_a_retried_batch_folds_what_its_failed_attempt_logged_and_counts_it_once():
    body = {"batch": [
        {"type": "identify", "userId": "ana", "messageId": "a", "timestamp": "2026-12-02T11:00:00Z",
         "traits": {"email": "ana@example.com"}},
        {"type": "track", "userId": "ana", "messageId": "b", "timestamp": "2026-12-02T11:01:00Z",
         "event": "Order Completed"},
        {"type": "track", "userId": "ana", "messageId": "b", "timestamp": "2026-12-02T11:01:00Z",
         "event": "Order Completed"},
    ]}
    log, profiles = MemoryEventLog(), FlakyProfileStore(failing=1)
    with pytest.raises(StorageUnavailable):
        ingest(parse_batch(body, NOW, LIMIT), log, profiles)
    ingest(parse_batch(body, NOW, LIMIT), log, profiles)
    ingest(parse_batch(body, NOW, LIMIT), log, profiles)  # and once more, after a lost answer
    person = profiles.get("user:ana")
    assert person.traits["email"] == "ana@example.com"
    assert person.counters["Order Completed"].count == 1
    assert person.counters["Order Completed"].last == "2026-12-02T11:01:00.000Z"


def sent_at(seconds: int, first_attempt: bool = True, **extra):
    """A track call as the Segment libraries send it: timestamp, and sentAt set
    at each attempt (so a retry's corrected time moves)."""
    body = {"userId": "ana", "event": "Product Added", "messageId": "add-1", "timestamp": "2026-12-02T11:00:00Z",
            "sentAt": "2026-12-02T11:00:01Z" if first_attempt else f"2026-12-02T11:00:0{1 + seconds}Z"}
    received = NOW if first_attempt else NOW.replace(second=seconds + 30)
    return parse_call("track", {**body, **extra}, received, LIMIT)


def test_a_retry_whose_corrected_time_moved_does_not_move_the_profiles_time():
    # Given an add to cart fully written (a cart reminder waits from its time)
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    ingest([sent_at(0)], log, profiles)
    first = profiles.get("user:ana").counters["Product Added"]
    # When the library retries it after losing the answer, with a later sentAt
    ingest([sent_at(3, first_attempt=False)], log, profiles)
    # Then the profile still shows one add, at the logged time (the reminder is not put off)
    assert profiles.get("user:ana").counters["Product Added"] == first


def test_a_retry_after_a_failed_profile_write_folds_the_logged_time_not_the_retrys():
    log, profiles = MemoryEventLog(), FlakyProfileStore(failing=1)
    with pytest.raises(StorageUnavailable):
        ingest([sent_at(0)], log, profiles)
    [logged] = log.items.values()
    ingest([sent_at(3, first_attempt=False)], log, profiles)
    counter = profiles.get("user:ana").counters["Product Added"]
    assert (counter.count, counter.last) == (1, iso(logged.timestamp))


def test_a_retried_event_without_a_client_timestamp_is_not_counted_again():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    body = {"userId": "ana", "event": "Product Added", "messageId": "add-2"}
    ingest([parse_call("track", body, NOW, LIMIT)], log, profiles)
    ingest([parse_call("track", body, NOW.replace(minute=1), LIMIT)], log, profiles)
    counter = profiles.get("user:ana").counters["Product Added"]
    assert (counter.count, counter.last) == (1, iso(NOW))


def test_a_retry_of_a_request_that_was_fully_written_writes_nothing():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    ingest([identify(email="ana@example.com")], log, profiles)
    writes = profiles.writes
    ingest([identify(email="ana@example.com")], log, profiles)
    assert profiles.writes == writes
    assert profiles.get("user:ana").counters["identify"].count == 1


def test_a_throttled_text_message_is_retried_not_failed_for_good(monkeypatch):
    class ThrottledSns:
        def publish(self, **request):
            raise ClientError({"Error": {"Code": "Throttled", "Message": "Rate exceeded"},
                               "ResponseMetadata": {"HTTPStatusCode": 429}}, "Publish")

    monkeypatch.setattr(channels_module, "client", lambda service: ThrottledSns())
    with pytest.raises(SendRetryable):
        AwsChannels(get_settings()).send_sms("+4915112345678", "Back in stock")
    with pytest.raises(SendRetryable):
        AwsChannels(get_settings()).send_alert("sales", "Lead", "text")


THANKS = parse_template({"id": "thanks", "channel": "email", "subject": "Thanks", "text": "Thanks"}, origin="test")


class FlakyLedger(MemoryLedger):
    """Fails the next ``fail`` calls of the named write (throttled)."""

    def __init__(self, **fail: int) -> None:
        super().__init__()
        self.fail = dict(fail)

    def _maybe_fail(self, name):
        if self.fail.get(name):
            self.fail[name] -= 1
            raise StorageUnavailable(f"{name} throttled")

    def release(self, profile_id, key):
        self._maybe_fail("release")
        return super().release(profile_id, key)

    def finish(self, record):
        self._maybe_fail("finish")
        return super().finish(record)


class ThrottledOnce(MemoryChannels):
    def __init__(self) -> None:
        super().__init__()
        self.throttles = 1

    def send_email(self, *args, **kwargs):
        if self.throttles:
            self.throttles -= 1
            raise SendRetryable("TooManyRequestsException")
        return super().send_email(*args, **kwargs)


def email_decision(profiles):
    trigger = parse_trigger({"id": "thanks", "description": "t", "category": "transactional",
                             "when": {"event": "Order Completed"},
                             "then": [{"email": {"template": "thanks", "from": "hi@example.com"}},
                                      {"update_profile": {"increment": {"orders": 1}}}]},
                            templates={"thanks"}, origin="test")
    event = parse_call("track", {"userId": "ana", "event": "Order Completed", "messageId": "o1"}, NOW, LIMIT)
    return evaluate(event, profiles.get("user:ana"), [trigger]).decisions


def person_with_email(profiles):
    profiles.save(apply_events(new_profile("user:ana"), [identify(email="ana@example.com")]))
    return profiles


def carry_out(decision, profiles, ledger, channels):
    return deliver(decision, profiles=profiles, ledger=ledger, templates=MemoryDefinitions(templates=[THANKS]),
                   channels=channels, now=lambda: NOW)


def test_a_throttled_send_whose_release_is_throttled_too_is_still_sent_on_the_retry():
    profiles = person_with_email(MemoryProfileStore())
    ledger, channels = FlakyLedger(release=1), ThrottledOnce()
    email, _ = email_decision(profiles)
    with pytest.raises(SendRetryable):
        carry_out(email, profiles, ledger, channels)
    # The queue delivers the decision again
    assert carry_out(email, profiles, ledger, channels).status == "sent"
    assert len(channels.sent) == 1


def test_a_sent_message_is_recorded_sent_when_the_first_outcome_write_fails():
    profiles = person_with_email(MemoryProfileStore())
    ledger, channels = FlakyLedger(finish=1), MemoryChannels()
    email, _ = email_decision(profiles)
    assert carry_out(email, profiles, ledger, channels).status == "sent"
    assert ledger.get("user:ana", email.ledger_key).status == "sent"
    assert len(channels.sent) == 1


def test_a_profile_update_that_could_not_be_written_is_retried_and_applied_once():
    profiles = person_with_email(FlakyProfileStore())
    ledger = MemoryLedger()
    _, update = email_decision(profiles)
    profiles.failing = 1
    with pytest.raises(SendRetryable):
        carry_out(update, profiles, ledger, MemoryChannels())
    assert ledger.get("user:ana", update.ledger_key) is None, "the claim was released"
    assert carry_out(update, profiles, ledger, MemoryChannels()).status == "sent"
    assert carry_out(update, profiles, ledger, MemoryChannels()).status == "sent"
    assert profiles.get("user:ana").traits["orders"] == 1
