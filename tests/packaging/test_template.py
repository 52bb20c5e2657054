"""The merged template (Chalice's SAM output + infra/template.yaml) and its
resource-only part, which the local stack and these tests create in moto."""
from __future__ import annotations

import zipfile
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file
from moto import mock_aws

from infra import template as infra
from infra.local_stack import local_parameters
from layers import package as packaging
from tests.packaging.conftest import functions_of

#: The properties SAM's CloudWatchEvent event source accepts (samtranslator's
#: eventsources/push.py). cfn-lint checks a function's own properties but not
#: those of its events, so a misspelt one would silently do nothing.
SAM_CLOUDWATCH_EVENT_PROPERTIES = {"EventBusName", "RuleName", "Pattern", "DeadLetterConfig", "RetryPolicy",
                                   "Input", "InputPath", "Target", "Enabled", "State"}


def test_cfn_lint_passes_on_the_merged_template(package_dir: Path) -> None:
    # No rule is ignored: Chalice's output and infra/ are clean as they are.
    matches = lint_file(package_dir / packaging.TEMPLATE, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_cfn_lint_would_catch_a_bad_property(package_dir: Path, tmp_path: Path) -> None:
    """The lint really reads the SAM resources (it validates them without the transform)."""
    broken = (package_dir / packaging.TEMPLATE).read_text().replace("      Handler: app.app",
                                                                    "      Handler: app.app\n      Handlr: x", 1)
    (tmp_path / "sam.yaml").write_text(broken)
    assert any("Handlr" in str(m) for m in lint_file(tmp_path / "sam.yaml", config=ManualArgs(regions=["us-east-1"])))


def _bus_function(template: dict[str, Any]) -> dict[str, Any]:
    found = [p for p in functions_of(template).values() if p["Handler"].endswith(".on_bus_event")]
    assert len(found) == 1
    return found[0]


def test_the_bus_function_listens_on_nudges_bus(merged_template: dict[str, Any]) -> None:
    function = _bus_function(merged_template)
    (source,) = function["Events"].values()
    assert source["Type"] == "CloudWatchEvent"
    properties = source["Properties"]
    assert set(properties) <= SAM_CLOUDWATCH_EVENT_PROPERTIES
    assert properties["EventBusName"] == {"Ref": "EventBus"}
    assert properties["Pattern"]["detail-type"]  # Chalice's pattern survived the merge
    # EventBridge could not invoke the function: retried, then parked.
    assert properties["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["BusDeadLetterQueue", "Arn"]}}
    retry = properties["RetryPolicy"]
    assert 0 <= retry["MaximumRetryAttempts"] <= 185 and 60 <= retry["MaximumEventAgeInSeconds"] <= 86400
    # The function failed: Lambda retries, then parks the event in the same queue.
    assert function["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["BusDeadLetterQueue", "Arn"]}}
    assert 0 <= function["EventInvokeConfig"]["MaximumRetryAttempts"] <= 2


def test_eventbridge_may_write_to_the_dead_letter_queue(merged_template: dict[str, Any]) -> None:
    resources = merged_template["Resources"]
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"
                and {"Ref": "BusDeadLetterQueue"} in r["Properties"]["Queues"]]
    assert len(policies) == 1
    (statement,) = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    pattern = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    # Any rule on Nudge's bus (SAM names the rule), and only those.
    rule = "arn:aws:events:us-east-1:123456789012:rule/nudge/nudge-dev-OnBusEventOnBusEventEvent-ABC123"
    rendered = (pattern.replace("${AWS::Partition}", "aws").replace("${AWS::Region}", "us-east-1")
                .replace("${AWS::AccountId}", "123456789012").replace("${EventBusName}", "nudge"))
    assert fnmatchcase(rule, rendered)
    assert not fnmatchcase(rule.replace("rule/nudge/", "rule/default/"), rendered)


def test_a_message_in_the_dead_letter_queue_raises_an_alarm(merged_template: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in merged_template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    dead_letter = [a for a in alarms if a["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BusDeadLetterQueue", "QueueName"]}}]]
    assert len(dead_letter) == 1
    alarm = dead_letter[0]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"  # an idle queue stops reporting


def test_the_wiring_stays_out_of_the_resource_only_stack(merged_template: dict[str, Any]) -> None:
    resources = infra.resource_template()["Resources"]
    assert {"APIHandler", "OnBusEvent", "ApiHandlerRole", "OnBusEventRole"} <= set(merged_template["Resources"])
    # The wiring: overlays onto Chalice's resources (no Type of their own) and the grants to its roles.
    wiring = {name for name, r in infra.load_template()["Resources"].items()
              if "Type" not in r or r["Type"] == "AWS::IAM::Policy"}
    assert wiring and not wiring & set(resources)
    assert all("Type" in r for r in resources.values())


def test_the_resource_part_deploys_into_moto(quiet_moto: None) -> None:
    body = infra.resource_template()
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        infra.create_stack(cloudformation, "nudge-resources", local_parameters("https://nudge.example.com/api"))
        stack = cloudformation.describe_stacks(StackName="nudge-resources")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        env = infra.stack_environment(cloudformation, "nudge-resources")
        tables = boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"]
        expected_tables = [n for n, r in body["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]
        assert len(tables) == len(expected_tables) >= 3
        for variable in ("NUDGE_EVENTS_TABLE", "NUDGE_PROFILES_TABLE", "NUDGE_KEYS_TABLE"):
            assert env[variable] in tables
        buses = [b["Name"] for b in boto3.client("events", region_name="us-east-1").list_event_buses()["EventBuses"]]
        assert env["NUDGE_EVENT_BUS"] in buses
        queues = boto3.client("sqs", region_name="us-east-1").list_queues()["QueueUrls"]
        assert any("BusDeadLetterQueue" in url for url in queues)


def test_another_stage_packages_too(tmp_path: Path) -> None:
    """Chalice's stage variables and infra's Globals both reach the prod template."""
    stage = "prod"
    packaging.run_chalice(stage, tmp_path / "out", _any_layer(tmp_path))
    template = yaml.safe_load((tmp_path / "out" / packaging.TEMPLATE).read_text())
    for properties in functions_of(template).values():
        assert properties["Environment"]["Variables"]["NUDGE_STAGE"] == stage
    assert template["Globals"]["Function"]["Environment"]["Variables"]["NUDGE_EVENTS_TABLE"] == {"Ref": "EventsTable"}


def _any_layer(tmp_path: Path) -> Path:
    layer = tmp_path / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("python/placeholder.py", "")
    return layer


def test_sqs_event_sources_report_partial_batch_failures(merged_template: dict[str, Any]) -> None:
    """One bad message must not send its whole batch back to the queue (nor its good
    neighbours to the dead-letter queue): the handler names the failed ones, which
    Lambda honours only with ReportBatchItemFailures. Chalice does not set it;
    infra/template.yaml merges it into each SQS event, as it does for the bus."""
    sources = [(name, event_name, event["Properties"])
               for name, function in functions_of(merged_template).items()
               for event_name, event in (function.get("Events") or {}).items() if event["Type"] == "SQS"]
    if not sources:
        pytest.skip("no SQS event source in the app yet")
    for name, event_name, properties in sources:
        assert "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []), f"{name}.{event_name}"
