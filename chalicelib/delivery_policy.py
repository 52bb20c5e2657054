"""Whether a message may go to a person now: the rules delivery applies last,
just before it claims the send.

In order, for email and SMS (internal alerts, webhooks and profile updates are
not addressed to the person, so none of this applies to them):

1. A suppressed address (chalicelib.consent): a hard bounce or an SMS STOP
   stops everything; a complaint or an erasure stops marketing.
2. An SMS to a number that sent STOP (the provider's opt-out list) is never
   sent, whatever its category; the number is suppressed from then on.
3. Marketing only:
   a. an erased person's user id gets no marketing until they consent again
      (a subscription state given after the erasure);
   b. the person must be subscribed to the trigger's topic on the channel and
      not have left all marketing on it;
   c. while the reputation guard has paused marketing email, it is held;
   d. quiet hours in the recipient's zone hold it to the first allowed minute
      (unless the trigger says ``quiet_hours: false``, which is refused for
      marketing SMS);
   e. the fatigue budget (chalicelib.budget) holds it until a slot frees, in
      priority order, or drops it past the trigger's expiry.

Holds end in a ``deferred`` message and a timer (chalicelib.timers.deferral);
a message held past its trigger's ``expires`` (counted from when it was first
held) is dropped. Transactional messages pass 3 entirely.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from chalicelib import budget as fatigue
from chalicelib.consent import DEFAULT_TOPICS, Topic, refusal, subscription_key
from chalicelib.errors import ConcurrentUpdate, SendRetryable
from chalicelib.evaluate import Decision
from chalicelib.ports import ConsentStore, TimerStore
from chalicelib.profiles import Profile
from chalicelib.segment import iso

PERSONAL = ("email", "sms")
#: How long marketing email waits before it looks again while sending is paused.
PAUSE_RECHECK = timedelta(minutes=30)
BUDGET_ATTEMPTS = 5


@dataclass(frozen=True)
class Verdict:
    """``send``, ``skip`` (never, with the reason) or ``hold`` (until ``until``)."""

    kind: str
    reason: str = ""
    until: datetime | None = None


SEND = Verdict("send")


class DeliveryPolicy:
    def __init__(
        self,
        *,
        timers: TimerStore,
        consent: ConsentStore | None = None,
        topics: tuple[Topic, ...] = DEFAULT_TOPICS,
        budget: Mapping[str, fatigue.Limit | None] | None = None,
        quiet_hours: Mapping[str, Any] | None = None,
        fallback_timezone: str = "UTC",
        opted_out: Callable[[str], bool] | None = None,
    ) -> None:
        self.timers = timers
        self.consent = consent
        self.topics = topics
        self.budget = budget if budget is not None else fatigue.parse_budget("")
        self.quiet_hours = quiet_hours
        self.fallback_timezone = fallback_timezone
        self.opted_out = opted_out

    def erased(self, profile_id: str) -> bool:
        """True when the decision's person was erased (their profile is gone for good)."""
        return (self.consent is not None and profile_id.startswith("user:")
                and self.consent.erased(profile_id.removeprefix("user:")))

    def check(self, decision: Decision, profile: Profile, channel: str, address: str, first_held: datetime,
              now: datetime) -> Verdict:
        """The verdict for one message; takes a budget slot when it says ``send``.
        The person's standing, with the pause flag for email, is one read
        (ConsentStore.standing)."""
        if channel not in PERSONAL:
            return SEND
        marketing = decision.category == "marketing"
        standing = (self.consent.standing(profile.profile_id, profile.user_id, address, channel)
                    if self.consent is not None else None)
        if standing is not None and standing.suppression is not None and standing.suppression.stops(decision.category):
            held = standing.suppression
            return Verdict("skip", f"the address is suppressed ({held.reason}, {held.at})")
        if channel == "sms" and self.opted_out is not None and self.opted_out(address):
            if self.consent is not None:
                self.consent.suppress(address, "all", "sms stop", iso(now))
            return Verdict("skip", "the number replied STOP (opted out of texts)")
        if not marketing:
            return SEND
        policy = decision.policy
        topic = policy.get("topic")
        if standing is not None:
            if standing.erased and not self._consented(standing.states, channel, topic):
                return Verdict("skip", "the person was erased and has not consented again")
            reason = refusal(decision.category, channel, topic, standing.states, self.topics)
            if reason:
                return Verdict("skip", reason)
        expires = first_held + timedelta(seconds=int(policy.get("expires") or 7 * 86400))
        if standing is not None and standing.paused:
            return self._held(now + PAUSE_RECHECK, expires, f"marketing email is paused: {standing.paused}")
        if policy.get("quietHours", True):
            from chalicelib.quiet_hours import next_allowed, window_for

            allowed = next_allowed(now, profile.timezone, window_for(channel, self.quiet_hours), self.fallback_timezone)
            if allowed > now:
                zone = profile.timezone or self.fallback_timezone
                return self._held(allowed, expires, f"quiet hours in {zone}; sends at {iso(allowed)}")
        limit = self.budget.get(channel)
        if limit is None or standing is None or not policy.get("budget", True):
            return SEND
        outcome = self._reserve(decision, profile.profile_id, channel, limit, expires, now,
                                (dict(standing.budget), standing.budget_version))
        if outcome.kind == "granted":
            return SEND
        if outcome.kind == "drop":
            return Verdict("skip", f"dropped: {outcome.reason}")
        return Verdict("hold", outcome.reason, outcome.until)

    def give_back(self, decision: Decision, channel: str) -> None:
        """Return the budget slot of a message that was not sent after all."""
        if self.consent is None or decision.category != "marketing" or self.budget.get(channel) is None:
            return
        for _ in range(BUDGET_ATTEMPTS):
            state, version = self.consent.budget(decision.profile_id, channel)
            if not any(slot["key"] == decision.ledger_key for slot in state.get("slots", [])):
                return
            try:
                self.consent.save_budget(decision.profile_id, channel,
                                         fatigue.release(state, decision.ledger_key), version)
                return
            except ConcurrentUpdate:
                continue

    @staticmethod
    def _consented(states: Mapping[str, Any], channel: str, topic: str | None) -> bool:
        state = states.get(subscription_key(channel, topic)) if topic else None
        return state is not None and state.subscribed

    @staticmethod
    def _held(until: datetime, expires: datetime, reason: str) -> Verdict:
        if until >= expires:
            return Verdict("skip", f"dropped: {reason}, after the trigger's expiry at {iso(expires)}")
        return Verdict("hold", reason, until)

    def _reserve(self, decision: Decision, profile_id: str, channel: str, limit: fatigue.Limit,
                 expires: datetime, now: datetime, read: tuple[dict[str, Any], int]) -> fatigue.Outcome:
        """Take a slot with an optimistic lock on the budget item (``read`` is the
        state already read with the standing); re-read and retry on a conflict."""
        assert self.consent is not None
        priority = int(decision.policy.get("priority") or fatigue.DEFAULT_PRIORITY)
        state, version = read
        for _ in range(BUDGET_ATTEMPTS):
            new_state, outcome = fatigue.reserve(state, limit, decision.ledger_key, priority, expires, now)
            if new_state == state:
                return outcome
            try:
                self.consent.save_budget(profile_id, channel, new_state, version)
                return outcome
            except ConcurrentUpdate:
                state, version = self.consent.budget(profile_id, channel)
        raise SendRetryable("the person's send budget kept changing; retry")
