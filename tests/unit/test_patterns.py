"""Trigger conditions in EventBridge pattern syntax, as a marketer writes them.

Each test reads as a rule of the pattern language: the condition, the event
and profile it meets, and whether the trigger fires.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.patterns import InvalidPattern, Pattern, compile_pattern, test_event_pattern


def fires(condition: dict[str, Any] | str, subject: dict[str, Any]) -> bool:
    return compile_pattern(condition).matches(subject)


def order(total: Any = 120, **properties: Any) -> dict[str, Any]:
    """A Segment "Order Completed" track call with the buyer's profile."""
    return {
        "event": {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-42",
            "properties": {"total": total, "currency": "EUR", **properties},
            "context": {"ip": "10.1.2.3", "locale": "fr-FR", "page": {"path": "/checkout/done"}},
        },
        "profile": {
            "traits": {"email": "ada@example.com", "plan": "pro", "vip": True, "referrer": None},
            "counters": {"Order Completed": 3},
        },
    }


BIG_ORDER = {"event": {"event": ["Order Completed"], "properties": {"total": [{"numeric": [">=", 100]}]}}}


# --- exact values -------------------------------------------------------------------------


def test_an_order_over_the_threshold_fires_the_big_spender_trigger():
    assert fires(BIG_ORDER, order(total=120))
    assert fires(BIG_ORDER, order(total=100))
    assert not fires(BIG_ORDER, order(total=99.99))


def test_fields_the_condition_does_not_mention_are_ignored():
    assert fires({"event": {"event": ["Order Completed"]}}, order())


def test_every_field_of_the_condition_must_hold():
    condition = {"event": {"event": ["Order Completed"]}, "profile": {"traits": {"plan": ["free"]}}}
    assert not fires(condition, order())


def test_several_values_for_one_field_mean_any_of_them():
    condition = {"profile": {"traits": {"plan": ["team", "pro", "enterprise"]}}}
    assert fires(condition, order())
    assert not fires({"profile": {"traits": {"plan": ["team", "enterprise"]}}}, order())


def test_string_matching_is_case_sensitive():
    assert not fires({"event": {"event": ["order completed"]}}, order())


def test_numbers_match_by_value_whatever_their_spelling():
    assert fires({"event": {"properties": {"total": [120.0]}}}, order(total=120))
    assert fires({"event": {"properties": {"total": [120]}}}, order(total=120.0))
    assert fires({"event": {"properties": {"total": [1.2e2]}}}, order(total=120))


def test_profile_numbers_read_back_from_dynamodb_as_decimals_still_match():
    # Given a profile as boto3 returns it: numbers are Decimals
    subject = order(total=Decimal("19.9"))
    subject["profile"]["counters"]["Order Completed"] = Decimal("3")
    # Then exact and numeric matching treat them as the same numbers
    assert fires({"profile": {"counters": {"Order Completed": [3]}}}, subject)
    assert fires({"event": {"properties": {"total": [19.9]}}}, subject)
    assert fires({"event": {"properties": {"total": [{"numeric": [">", 19.89, "<", 19.91]}]}}}, subject)


def test_a_pattern_may_itself_hold_decimals_when_stored_in_dynamodb():
    condition = {"event": {"properties": {"total": [{"numeric": [">=", Decimal("100")]}]}}}
    assert fires(condition, order(total=100))
    assert compile_pattern(condition).source == '{"event":{"properties":{"total":[{"numeric":[">=",100]}]}}}'


def test_values_are_typed_a_string_never_equals_a_number_or_a_boolean():
    assert not fires({"event": {"properties": {"total": ["120"]}}}, order(total=120))
    assert not fires({"event": {"properties": {"total": [120]}}}, order(total="120"))
    assert fires({"profile": {"traits": {"vip": [True]}}}, order())
    assert not fires({"profile": {"traits": {"vip": ["true"]}}}, order())
    assert not fires({"profile": {"traits": {"vip": [1]}}}, order())
    assert not fires({"event": {"properties": {"total": [True]}}}, order(total=1))


def test_null_matches_only_null_not_an_empty_string_nor_a_missing_field():
    condition = {"profile": {"traits": {"referrer": [None]}}}
    assert fires(condition, order())
    subject = order()
    subject["profile"]["traits"]["referrer"] = ""
    assert not fires(condition, subject)
    del subject["profile"]["traits"]["referrer"]
    assert not fires(condition, subject)


def test_an_empty_string_matches_only_an_empty_string():
    condition = {"profile": {"traits": {"referrer": [""]}}}
    assert not fires(condition, order())
    subject = order()
    subject["profile"]["traits"]["referrer"] = ""
    assert fires(condition, subject)


def test_a_condition_on_a_missing_field_does_not_fire():
    assert not fires({"event": {"properties": {"coupon": ["WELCOME10"]}}}, order())
    assert not fires({"event": {"campaign": {"name": ["spring"]}}}, order())


def test_a_value_condition_never_matches_an_object():
    # context.page is an object, not a value
    assert not fires({"event": {"context": {"page": ["/checkout/done"]}}}, order())


# --- arrays in the event ------------------------------------------------------------------


def test_an_array_matches_when_any_element_matches():
    subject = order(tags=["gift", "express"])
    assert fires({"event": {"properties": {"tags": ["express"]}}}, subject)
    assert fires({"event": {"properties": {"tags": [{"prefix": "gi"}]}}}, subject)
    assert not fires({"event": {"properties": {"tags": ["standard"]}}}, subject)


def test_nested_arrays_are_flattened():
    subject = order(tags=[["gift"], ["express", ["fragile"]]])
    assert fires({"event": {"properties": {"tags": ["fragile"]}}}, subject)


def test_an_array_of_objects_matches_when_one_element_satisfies_the_whole_condition():
    subject = order(products=[{"sku": "MUG-1", "price": 12}, {"sku": "TEE-9", "price": 30}])
    assert fires({"event": {"properties": {"products": {"sku": ["TEE-9"], "price": [30]}}}}, subject)
    # The SKU of one line and the price of another do not make a match together
    assert not fires({"event": {"properties": {"products": {"sku": ["MUG-1"], "price": [30]}}}}, subject)


def test_array_consistency_holds_across_or_alternatives_too():
    subject = order(products=[{"sku": "MUG-1"}, {"category": "apparel"}])
    condition = {"event": {"properties": {
        "products": {"sku": ["MUG-1"]},
        "$or": [{"products": {"category": ["apparel"]}}, {"currency": ["USD"]}],
    }}}
    assert not fires(condition, subject)
    subject["event"]["properties"]["products"] = [{"sku": "MUG-1", "category": "apparel"}]
    assert fires(condition, subject)


def test_an_empty_array_offers_no_value():
    subject = order(tags=[])
    assert not fires({"event": {"properties": {"tags": [{"exists": True}]}}}, subject)
    assert fires({"event": {"properties": {"tags": [{"exists": False}]}}}, subject)
    assert not fires({"event": {"properties": {"tags": [{"anything-but": "gift"}]}}}, subject)


# --- prefix, suffix, equals-ignore-case, wildcard -------------------------------------------


def test_prefix():
    assert fires({"event": {"context": {"locale": [{"prefix": "fr-"}]}}}, order())
    assert not fires({"event": {"context": {"locale": [{"prefix": "FR-"}]}}}, order())


def test_prefix_ignoring_case():
    assert fires({"event": {"context": {"locale": [{"prefix": {"equals-ignore-case": "FR-"}}]}}}, order())
    assert fires({"event": {"event": [{"prefix": {"equals-ignore-case": "order c"}}]}}, order())
    assert not fires({"event": {"event": [{"prefix": {"equals-ignore-case": "order x"}}]}}, order())


def test_suffix():
    assert fires({"profile": {"traits": {"email": [{"suffix": "@example.com"}]}}}, order())
    assert not fires({"profile": {"traits": {"email": [{"suffix": "@EXAMPLE.com"}]}}}, order())


def test_suffix_ignoring_case():
    assert fires({"profile": {"traits": {"email": [{"suffix": {"equals-ignore-case": "@EXAMPLE.COM"}}]}}}, order())
    assert fires({"event": {"event": [{"suffix": {"equals-ignore-case": " completed"}}]}}, order())
    assert not fires({"event": {"event": [{"suffix": {"equals-ignore-case": "completes"}}]}}, order())


def test_equals_ignore_case():
    assert fires({"event": {"event": [{"equals-ignore-case": "ORDER COMPLETED"}]}}, order())
    assert not fires({"event": {"event": [{"equals-ignore-case": "order"}]}}, order())


def test_string_operators_never_match_numbers_booleans_or_null():
    for operator in ({"prefix": "1"}, {"suffix": "0"}, {"equals-ignore-case": "120"}, {"wildcard": "*"}):
        assert not fires({"event": {"properties": {"total": [operator]}}}, order(total=120))
        assert not fires({"profile": {"traits": {"referrer": [operator]}}}, order())


def test_wildcard_star_is_any_run_of_characters_even_none():
    condition = {"event": {"context": {"page": {"path": [{"wildcard": "/checkout/*"}]}}}}
    assert fires(condition, order())
    assert fires({"event": {"event": [{"wildcard": "Order*Completed"}]}}, order())
    assert fires({"event": {"event": [{"wildcard": "*"}]}}, order())
    assert fires({"event": {"event": [{"wildcard": "Order Completed*"}]}}, order())
    assert not fires({"event": {"event": [{"wildcard": "Order"}]}}, order())


def test_wildcard_pieces_must_appear_in_order_without_overlapping():
    assert fires({"event": {"event": [{"wildcard": "*der*ted"}]}}, order())
    assert not fires({"event": {"event": [{"wildcard": "*ted*der*"}]}}, order())
    assert not fires({"event": {"event": [{"wildcard": "Order*er Completed"}]}}, order())  # "er" reused
    shipped = order(status="shipped")
    assert fires({"event": {"properties": {"status": [{"wildcard": "*p*p*"}]}}}, shipped)
    assert not fires({"event": {"properties": {"status": [{"wildcard": "*p*p*p*"}]}}}, shipped)  # two p's only
    assert not fires({"event": {"properties": {"status": [{"wildcard": "*d*ed"}]}}}, shipped)  # the d ends "ed"


def test_wildcard_backslash_escapes_a_literal_star_or_backslash():
    subject = order(promo="5*OFF", path="C:\\promo")
    assert fires({"event": {"properties": {"promo": [{"wildcard": "5\\*OFF"}]}}}, subject)
    assert not fires({"event": {"properties": {"promo": [{"wildcard": "5\\*O"}]}}}, subject)
    assert fires({"event": {"properties": {"path": [{"wildcard": "C:\\\\*"}]}}}, subject)


# --- anything-but ---------------------------------------------------------------------------


def test_anything_but_a_value():
    assert fires({"profile": {"traits": {"plan": [{"anything-but": "free"}]}}}, order())
    assert not fires({"profile": {"traits": {"plan": [{"anything-but": "pro"}]}}}, order())


def test_anything_but_a_list_of_strings_or_of_numbers():
    assert not fires({"profile": {"traits": {"plan": [{"anything-but": ["pro", "team"]}]}}}, order())
    assert fires({"event": {"properties": {"total": [{"anything-but": [0, 1]}]}}}, order(total=120))
    assert not fires({"event": {"properties": {"total": [{"anything-but": [120.0]}]}}}, order(total=120))


def test_anything_but_is_typed():
    # The string "120" is not the number 120, so the number passes
    assert fires({"event": {"properties": {"total": [{"anything-but": "120"}]}}}, order(total=120))
    assert fires({"event": {"properties": {"total": [{"anything-but": 120}]}}}, order(total="120"))


def test_anything_but_matches_null_but_never_a_missing_field():
    assert fires({"profile": {"traits": {"referrer": [{"anything-but": "newsletter"}]}}}, order())
    assert not fires({"profile": {"traits": {"coupon": [{"anything-but": "newsletter"}]}}}, order())


def test_anything_but_on_an_array_needs_one_element_outside_the_exclusion():
    assert fires({"event": {"properties": {"tags": [{"anything-but": "gift"}]}}}, order(tags=["gift", "express"]))
    assert not fires({"event": {"properties": {"tags": [{"anything-but": "gift"}]}}}, order(tags=["gift"]))


def test_anything_but_prefix_and_suffix():
    assert not fires({"event": {"context": {"locale": [{"anything-but": {"prefix": "fr"}}]}}}, order())
    assert fires({"event": {"context": {"locale": [{"anything-but": {"prefix": ["en", "de"]}}]}}}, order())
    assert not fires({"profile": {"traits": {"email": [{"anything-but": {"suffix": ".com"}}]}}}, order())
    assert fires({"profile": {"traits": {"email": [{"anything-but": {"suffix": ".org"}}]}}}, order())


def test_anything_but_ignoring_case():
    assert not fires({"profile": {"traits": {"plan": [{"anything-but": {"equals-ignore-case": "PRO"}}]}}}, order())
    assert fires({"profile": {"traits": {"plan": [{"anything-but": {"equals-ignore-case": ["FREE", "TEAM"]}}]}}},
                 order())


def test_anything_but_a_wildcard():
    condition = {"event": {"context": {"page": {"path": [{"anything-but": {"wildcard": "/checkout/*"}}]}}}}
    assert not fires(condition, order())
    condition = {"event": {"context": {"page": {"path": [{"anything-but": {"wildcard": ["/blog/*", "/docs/*"]}}]}}}}
    assert fires(condition, order())


def test_anything_but_string_operators_let_non_strings_through():
    assert fires({"event": {"properties": {"total": [{"anything-but": {"prefix": "1"}}]}}}, order(total=120))


# --- numeric --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparison", "total", "expected"),
    [
        ([">", 100], 100, False),
        ([">", 100], 100.01, True),
        ([">=", 100], 100, True),
        (["<", 20], 19.99, True),
        (["<", 20], 20, False),
        (["<=", 20], 20, True),
        (["=", 49.9], 49.9, True),
        (["=", 49.9], 49.91, False),
        ([">", 0, "<=", 50], 50, True),
        ([">", 0, "<=", 50], 0, False),
        ([">=", 0, "<", 50], 0, True),
        ([">=", -10, "<", -5], -7.5, True),
        ([">", 0], 5_000_000_000, True),
    ],
)
def test_numeric_comparisons(comparison: list[Any], total: Any, expected: bool):
    assert fires({"event": {"properties": {"total": [{"numeric": comparison}]}}}, order(total=total)) is expected


def test_numeric_needs_a_json_number():
    condition = {"event": {"properties": {"total": [{"numeric": [">", 0]}]}}}
    assert not fires(condition, order(total="120"))
    assert not fires(condition, order(total=True))
    assert not fires(condition, order(total=None))


def test_numeric_matching_stops_at_five_billion_as_in_eventbridge():
    condition = {"event": {"properties": {"total": [{"numeric": [">", 0]}]}}}
    assert not fires(condition, order(total=5_000_000_001))
    # An exact number is still compared by value
    assert fires({"event": {"properties": {"total": [5_000_000_001]}}}, order(total=5_000_000_001.0))


def test_numeric_ranges_can_be_offered_side_by_side():
    condition = {"event": {"properties": {"total": [{"numeric": ["<", 10]}, {"numeric": [">", 1000]}]}}}
    assert fires(condition, order(total=5))
    assert fires(condition, order(total=5000))
    assert not fires(condition, order(total=500))


# --- exists ---------------------------------------------------------------------------------


def test_exists_true_fires_when_the_field_has_a_value_null_included():
    assert fires({"profile": {"traits": {"email": [{"exists": True}]}}}, order())
    assert fires({"profile": {"traits": {"referrer": [{"exists": True}]}}}, order())
    assert not fires({"profile": {"traits": {"phone": [{"exists": True}]}}}, order())


def test_exists_false_fires_when_the_field_is_missing():
    assert fires({"profile": {"traits": {"phone": [{"exists": False}]}}}, order())
    assert not fires({"profile": {"traits": {"referrer": [{"exists": False}]}}}, order())


def test_exists_false_fires_when_a_whole_branch_is_missing():
    assert fires({"event": {"campaign": {"name": [{"exists": False}]}}}, order())


def test_exists_looks_at_values_only_an_object_is_not_one():
    # context.page is an object: as a leaf it does not exist
    assert not fires({"event": {"context": {"page": [{"exists": True}]}}}, order())
    assert fires({"event": {"context": {"page": [{"exists": False}]}}}, order())


def test_exists_false_or_a_value():
    condition = {"event": {"properties": {"coupon": [{"exists": False}, "WELCOME10"]}}}
    assert fires(condition, order())
    assert fires(condition, order(coupon="WELCOME10"))
    assert not fires(condition, order(coupon="SPRING"))


# --- cidr -----------------------------------------------------------------------------------


def test_cidr_matches_addresses_in_the_block():
    assert fires({"event": {"context": {"ip": [{"cidr": "10.1.0.0/16"}]}}}, order())
    assert not fires({"event": {"context": {"ip": [{"cidr": "10.2.0.0/16"}]}}}, order())


@pytest.mark.parametrize(("ip", "inside"), [
    ("10.1.2.0", True), ("10.1.2.255", True), ("10.1.1.255", False), ("10.1.3.0", False),
])
def test_cidr_blocks_include_their_first_and_last_address(ip: str, inside: bool):
    subject = order()
    subject["event"]["context"]["ip"] = ip
    assert fires({"event": {"context": {"ip": [{"cidr": "10.1.2.0/24"}]}}}, subject) is inside


def test_cidr_matches_ipv6_and_ignores_what_is_not_an_address():
    subject = order()
    subject["event"]["context"]["ip"] = "2001:db8::7"
    assert fires({"event": {"context": {"ip": [{"cidr": "2001:db8::/32"}]}}}, subject)
    assert not fires({"event": {"context": {"ip": [{"cidr": "10.0.0.0/8"}]}}}, subject)
    subject["event"]["context"]["ip"] = "unknown"
    assert not fires({"event": {"context": {"ip": [{"cidr": "10.0.0.0/8"}]}}}, subject)


# --- $or ------------------------------------------------------------------------------------


def test_or_at_the_top_level():
    condition = {"$or": [
        {"event": {"event": ["Order Completed"], "properties": {"total": [{"numeric": [">=", 500]}]}}},
        {"profile": {"traits": {"vip": [True]}}},
    ]}
    assert fires(condition, order(total=120))  # a VIP
    subject = order(total=120)
    subject["profile"]["traits"]["vip"] = False
    assert not fires(condition, subject)


def test_or_inside_an_object_and_alongside_other_fields():
    condition = {
        "event": {"event": ["Order Completed"]},
        "profile": {"$or": [{"traits": {"plan": ["enterprise"]}}, {"counters": {"Order Completed": [{"numeric": [">=", 3]}]}}]},
    }
    assert fires(condition, order())
    subject = order()
    subject["profile"]["counters"]["Order Completed"] = 1
    assert not fires(condition, subject)


def test_nested_or():
    condition = {"$or": [
        {"event": {"properties": {"currency": ["USD"]}}},
        {"$or": [{"profile": {"traits": {"plan": ["team"]}}}, {"event": {"context": {"locale": ["fr-FR"]}}}]},
    ]}
    assert fires(condition, order())


# --- the compiled pattern -----------------------------------------------------------------


def test_a_pattern_compiles_from_json_text():
    assert compile_pattern(json.dumps(BIG_ORDER)).matches(order())


def test_a_compiled_pattern_lists_the_fields_it_tests():
    condition = {
        "event": {"event": ["Order Completed"], "properties": {"total": [{"numeric": [">", 0]}]}},
        "$or": [{"profile": {"traits": {"plan": ["pro"]}}}, {"profile": {"traits": {"vip": [True]}}}],
    }
    assert compile_pattern(condition).fields == (
        "event.event", "event.properties.total", "profile.traits.plan", "profile.traits.vip",
    )


def test_a_compiled_pattern_is_a_frozen_value():
    pattern = compile_pattern(BIG_ORDER)
    assert pattern == compile_pattern(json.dumps(BIG_ORDER))
    assert hash(pattern) == hash(compile_pattern(BIG_ORDER))
    with pytest.raises(AttributeError):
        pattern.source = "{}"  # type: ignore[misc]
    assert isinstance(pattern, Pattern)


def test_compiling_does_not_keep_a_reference_to_the_callers_dict():
    condition = {"event": {"event": ["Order Completed"]}}
    pattern = compile_pattern(condition)
    condition["event"]["event"] = ["Signed Up"]
    assert pattern.matches(order())


def test_an_event_must_be_a_mapping():
    with pytest.raises(TypeError):
        compile_pattern(BIG_ORDER).matches(["not", "an", "event"])  # type: ignore[arg-type]


def test_an_event_value_that_is_not_json_is_refused_loudly():
    subject = order(total=object())
    with pytest.raises(TypeError, match="total"):
        fires(BIG_ORDER, subject)


# --- test_event_pattern (the AWS TestEventPattern call) --------------------------------------


def test_event_pattern_on_json_text():
    assert test_event_pattern(json.dumps(BIG_ORDER), json.dumps(order()))
    assert not test_event_pattern(json.dumps(BIG_ORDER), json.dumps(order(total=5)))


def test_event_pattern_with_an_invalid_pattern_raises_invalid_pattern():
    with pytest.raises(InvalidPattern):
        test_event_pattern('{"event": ["x"', "{}")


@pytest.mark.parametrize("event_json", ['{"event": ', "[1, 2]", '"text"', '{"total": NaN}'])
def test_event_pattern_with_an_invalid_event_raises_value_error(event_json: str):
    with pytest.raises(ValueError) as raised:
        test_event_pattern(json.dumps(BIG_ORDER), event_json)
    assert not isinstance(raised.value, InvalidPattern)


# --- invalid patterns, with the reason a marketer sees ----------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ('{"event": ', "pattern: is not valid JSON"),
        ("[]", "pattern: must be a JSON object, not a list"),
        ({}, "pattern: an empty object is not allowed"),
        ({"event": {}}, "event: an empty object is not allowed"),
        ({"event": "Order Completed"}, "event: must be an object of fields or a list of matchers, not a string"),
        ({"event": {"event": []}}, "event.event: an empty list of matchers is not allowed"),
        ({"event": {"event": [["Order Completed"]]}}, "event.event: a matcher must be a string, number, boolean"),
        ({"total": [float("inf")]}, "total: an exact number needs a finite number"),
        ({"total": [{}]}, "total: a matcher object takes exactly one operator, got none"),
        ({"total": [{"prefix": "a", "suffix": "b"}]}, "total: a matcher object takes exactly one operator, got prefix, suffix"),
        ({"total": [{"regex": "a.*"}]}, 'total: unknown operator "regex"'),
        ({"plan": [{"prefix": 5}]}, 'plan: prefix takes a string or {"equals-ignore-case": string}, not a number'),
        ({"plan": [{"prefix": {"wildcard": "a*"}}]}, "plan: prefix takes a string or"),
        ({"plan": [{"suffix": ["a"]}]}, "plan: suffix takes a string or"),
        ({"plan": [{"equals-ignore-case": ["pro"]}]}, "plan: equals-ignore-case takes a string, not a list"),
        ({"plan": [{"wildcard": "pro**"}]}, "plan: wildcard \"pro**\": consecutive * are not allowed"),
        ({"plan": [{"wildcard": "pr\\o"}]}, "plan: wildcard \"pr\\\\o\": a backslash may only escape * or \\"),
        ({"plan": [{"wildcard": "pro\\"}]}, 'plan: wildcard "pro\\\\": a backslash may only escape'),
        ({"plan": [{"exists": "yes"}]}, "plan: exists takes true or false, not a string"),
        ({"plan": [{"anything-but": None}]}, "plan: anything-but takes a string, a number, a list of either"),
        ({"plan": [{"anything-but": True}]}, "plan: anything-but takes a string, a number"),
        ({"plan": [{"anything-but": []}]}, "plan: anything-but takes a non-empty list"),
        ({"plan": [{"anything-but": ["pro", 1]}]}, "plan: an anything-but list must be all strings or all numbers"),
        ({"plan": [{"anything-but": {"exists": False}}]}, 'plan: anything-but cannot take "exists"'),
        ({"plan": [{"anything-but": {"prefix": ""}}]}, "plan: anything-but prefix cannot be empty"),
        ({"plan": [{"anything-but": {"suffix": [1]}}]}, "plan: anything-but suffix takes a string or a non-empty list"),
        ({"plan": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}, "plan: anything-but takes exactly one of"),
        ({"detail": {"price": [{"numeric": [">", 0, "<="]}]}},
         "detail.price: numeric range needs an even list of operator/value pairs"),
        ({"price": [{"numeric": []}]}, "price: numeric takes a list of operator/value pairs"),
        ({"price": [{"numeric": ">0"}]}, "price: numeric takes a list of operator/value pairs"),
        ({"price": [{"numeric": ["!=", 0]}]}, 'price: unknown numeric operator "!="'),
        ({"price": [{"numeric": [">", "0"]}]}, "price: numeric > needs a number, not a string"),
        ({"price": [{"numeric": [">", True]}]}, "price: numeric > needs a number, not a boolean"),
        ({"price": [{"numeric": ["<", 10, ">", 0]}]}, "price: a numeric range is written lower bound first"),
        ({"price": [{"numeric": [">", 0, ">", 10]}]}, 'price: a numeric range needs an upper bound ("<" or "<=") after ">"'),
        ({"price": [{"numeric": ["=", 1, "<", 10]}]}, 'price: numeric "=" cannot be combined'),
        ({"price": [{"numeric": [">", 10, "<", 10]}]}, "price: a numeric range needs its lower bound below its upper bound"),
        ({"price": [{"numeric": [">", 0, "<", 10, "<", 20]}]}, "price: numeric takes at most two comparisons"),
        ({"price": [{"numeric": [">", 0, "<", 10, "=", 20]}]}, "price: numeric takes at most two comparisons"),
        ({"price": [{"numeric": [">", 6e9]}]}, "price: numeric values must be between -5000000000 and 5000000000"),
        ({"price": [{"numeric": [">", 0.1234567]}]}, "price: numeric values have at most 6 decimal places"),
        ({"ip": [{"cidr": "10.0.0.0"}]}, "ip: cidr takes an address/prefix-length like 10.0.0.0/24"),
        ({"ip": [{"cidr": "10.0.0/8"}]}, "ip: cidr has an invalid address"),
        ({"ip": [{"cidr": "10.0.0.1/32"}]}, "ip: cidr prefix length must be below 32 for IPv4"),
        ({"ip": [{"cidr": 10}]}, "ip: cidr takes a string, not a number"),
        ({"$or": {"plan": ["pro"]}}, "$or: $or takes a list of at least two patterns, not an object"),
        ({"$or": [{"plan": ["pro"]}]}, "$or: $or takes a list of at least two patterns"),
        ({"$or": [{"plan": ["pro"]}, ["team"]]}, "$or[1]: each $or alternative must be an object, not a list"),
        ({"$or": [{"plan": ["pro"]}, {}]}, "$or[1]: an empty object is not allowed"),
        ({"profile": {"$or": [{"plan": ["pro"]}, {"prefix": ["team"]}]}},
         "profile.$or[1].prefix: 'prefix' is an operator name and cannot be a field name inside $or"),
        ({"profile": {"$or": [{"plan": ["pro"]}, {"traits": {"plan": [{"numeric": [">"]}]}}]}},
         "profile.$or[1].traits.plan: numeric range needs an even list"),
        ({1: ["x"]}, "pattern: field names must be strings, not a number"),
    ],
)
def test_invalid_patterns_are_refused_with_where_and_why(condition: Any, message: str):
    with pytest.raises(InvalidPattern) as raised:
        compile_pattern(condition)
    assert str(raised.value).startswith(message), str(raised.value)


def test_invalid_pattern_is_a_value_error_carrying_path_and_reason():
    with pytest.raises(ValueError) as raised:
        compile_pattern({"detail": {"price": [{"numeric": [">", 0, "<="]}]}})
    assert isinstance(raised.value, InvalidPattern)
    assert raised.value.path == "detail.price"
    assert raised.value.reason == "numeric range needs an even list of operator/value pairs"


def test_or_combinations_are_capped():
    many = {"$or": [{f"f{i}": ["x"]} for i in range(8)]}
    condition = {f"level{n}": many for n in range(4)}  # 8**4 = 4096 combinations
    with pytest.raises(InvalidPattern, match="more than 1024 combinations"):
        compile_pattern(condition)


def test_operator_names_are_fine_as_field_names_outside_or():
    assert fires({"event": {"properties": {"prefix": ["Mr"]}}}, order(prefix="Mr"))
