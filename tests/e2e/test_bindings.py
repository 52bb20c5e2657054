"""The runtime takes each handler's queue, stream, bus and retry settings from
the template's wiring, resolved against a stack created in the emulator."""
from __future__ import annotations

import json
import uuid

from infra.bindings import NO_BINDING, StackBindings
from infra.template import load_template
from tests.e2e.conftest import Stack

WIRED = {
    "Parameters": {"BusName": {"Type": "String", "Default": "wired-bus"}},
    "Resources": {
        "Work": {"Type": "AWS::SQS::Queue"},
        "WorkDeadLetters": {"Type": "AWS::SQS::Queue"},
        "Log": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"}}},
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": {"Ref": "BusName"}}},
    },
}
WIRING = {
    # Blocks merged into Chalice's generated functions, named like them.
    "OnWork": {"Properties": {"Events": {"OnWorkSqsEventSource": {"Properties": {
        "Queue": {"Fn::GetAtt": ["Work", "Arn"]}, "BatchSize": 7,
        "FunctionResponseTypes": ["ReportBatchItemFailures"]}}}}},
    "OnLogged": {"Properties": {"Events": {"OnLoggedDynamodbEventSource": {"Properties": {
        "Stream": {"Fn::GetAtt": ["Log", "StreamArn"]}, "MaximumRetryAttempts": 4,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["WorkDeadLetters", "Arn"]}}}}}}}},
    "OnBus": {"Properties": {
        "Events": {"OnBusEvent": {"Properties": {"EventBusName": {"Ref": "Bus"}}}},
        "EventInvokeConfig": {"MaximumRetryAttempts": 0},
        "DeadLetterQueue": {"Type": "SQS", "TargetArn": {
            "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${WorkDeadLetters.QueueName}"}}}},
}


def test_wiring_blocks_resolve_to_the_stack_resources(stack: Stack) -> None:
    cloudformation = stack.aws_client("cloudformation")
    name = f"wired-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(WIRED))
    cloudformation.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                for r in cloudformation.describe_stack_resources(StackName=name)["StackResources"]
                if r.get("LogicalResourceId")}
    sqs = stack.aws_client("sqs")
    work_url = sqs.get_queue_url(QueueName=physical["Work"].rsplit("/", 1)[1])["QueueUrl"]
    dead_url = sqs.get_queue_url(QueueName=physical["WorkDeadLetters"].rsplit("/", 1)[1])["QueueUrl"]
    stream_arn = stack.aws_client("dynamodb").describe_table(TableName=physical["Log"])["Table"]["LatestStreamArn"]

    bindings = StackBindings({**WIRED, "Resources": {**WIRED["Resources"], **WIRING}}, cloudformation, name,
                             stack.aws_client)

    work = bindings("on_work")
    assert work.queue_url == work_url and work.batch_size == 7 and work.report_batch_item_failures is True
    logged = bindings("on_logged")
    assert logged.stream_arn == stream_arn and logged.max_attempts == 5
    assert logged.dead_letter_queue_url == dead_url and logged.report_batch_item_failures is False
    bus = bindings("on_bus")
    assert bus.event_bus == "wired-bus" and bus.max_attempts == 1 and bus.dead_letter_queue_url == dead_url
    assert bindings("not_wired") is NO_BINDING


def test_the_bus_handler_is_bound_to_nudges_bus(stack: Stack) -> None:
    bindings = StackBindings(load_template(), stack.aws_client("cloudformation"), "nudge-local", stack.aws_client)

    assert bindings("on_bus_event").event_bus == stack.bus
