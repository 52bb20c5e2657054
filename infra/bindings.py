"""What infra/template.yaml binds each function's event source to, resolved in a created stack.

A Chalice decorator names its queue, stream, topic or bus as the code sees it,
often a placeholder; the template's wiring block for the function (a resource
named like Chalice's generated one, e.g. ``OnEventLogged`` for handler
``on_event_logged``, merged into Chalice's output) binds it to the real
resource, and sets retries, dead letters and partial-batch reporting. The local
runtime reads the same block, so it delivers from the resource the cloud would,
with the cloud's retry settings.

Only the intrinsic functions the wiring uses are resolved (Ref, Fn::GetAtt,
Fn::Sub) and only the attributes the event sources need.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from chalice.utils import to_cfn_resource_name
from infra.template import physical_ids

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class Binding:
    """A function's event source as the template binds it (None: not said)."""

    event_bus: str | None = None
    queue_url: str | None = None
    stream_arn: str | None = None
    topic_arn: str | None = None
    batch_size: int | None = None
    #: FunctionResponseTypes includes ReportBatchItemFailures (queues, streams).
    report_batch_item_failures: bool | None = None
    #: Invocations before giving up: 1 + MaximumRetryAttempts (EventInvokeConfig
    #: for asynchronous sources, the event source's own for streams).
    max_attempts: int | None = None
    #: Where events go after the last attempt (the function's DeadLetterQueue,
    #: or a stream source's DestinationConfig.OnFailure), as an emulator URL.
    dead_letter_queue_url: str | None = None


NO_BINDING = Binding()


class StackBindings:
    """``bindings(handler_name) -> Binding`` for the functions of a created stack."""

    def __init__(self, template: Mapping[str, Any], cloudformation: Any, stack_name: str,
                 clients: ClientFactory) -> None:
        self._template = template
        self._resources: Mapping[str, Any] = template.get("Resources", {})
        self._client_factory = clients
        self._client_cache: dict[str, Any] = {}
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        self._parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        self._region = stack["StackId"].split(":")[3]
        self._account = stack["StackId"].split(":")[4]
        # Resources the emulator cannot create have no id; those stay unresolved.
        self._physical = physical_ids(cloudformation, stack_name)

    def _clients(self, service: str) -> Any:
        if service not in self._client_cache:
            self._client_cache[service] = self._client_factory(service)
        return self._client_cache[service]

    def physical_id(self, logical_id: str) -> str | None:
        return self._physical.get(logical_id)

    def __call__(self, handler_name: str) -> Binding:
        function = self._resources.get(to_cfn_resource_name(handler_name))
        if not isinstance(function, Mapping):
            return NO_BINDING
        properties = function.get("Properties") or {}
        values: dict[str, Any] = {}
        for event in (properties.get("Events") or {}).values():
            event_properties = (event or {}).get("Properties") or {}
            if "EventBusName" in event_properties:
                values["event_bus"] = self.resolve(event_properties["EventBusName"])
            if "Queue" in event_properties:
                values["queue_url"] = self._queue_url(self.resolve(event_properties["Queue"]))
            if "Stream" in event_properties:
                values["stream_arn"] = self.resolve(event_properties["Stream"])
            if "Topic" in event_properties:
                values["topic_arn"] = self.resolve(event_properties["Topic"])
            if "BatchSize" in event_properties:
                values["batch_size"] = int(event_properties["BatchSize"])
            if "Queue" in event_properties or "Stream" in event_properties:
                values["report_batch_item_failures"] = (
                    "ReportBatchItemFailures" in (event_properties.get("FunctionResponseTypes") or []))
            if "MaximumRetryAttempts" in event_properties and "Stream" in event_properties:
                retries = int(event_properties["MaximumRetryAttempts"])
                values["max_attempts"] = None if retries < 0 else retries + 1
            on_failure = ((event_properties.get("DestinationConfig") or {}).get("OnFailure") or {})
            if on_failure.get("Destination"):
                values["dead_letter_queue_url"] = self._queue_url(self.resolve(on_failure["Destination"]))
        invoke_config = properties.get("EventInvokeConfig") or {}
        if "MaximumRetryAttempts" in invoke_config and "max_attempts" not in values:
            values["max_attempts"] = int(invoke_config["MaximumRetryAttempts"]) + 1
        dead_letters = properties.get("DeadLetterQueue") or {}
        if dead_letters.get("Type") == "SQS" and "dead_letter_queue_url" not in values:
            values["dead_letter_queue_url"] = self._queue_url(self.resolve(dead_letters.get("TargetArn")))
        return Binding(**values)

    # -- intrinsic functions --------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """A template value with Ref, Fn::GetAtt and Fn::Sub resolved; None
        when it names something the stack does not have."""
        if not isinstance(value, Mapping):
            return value
        if "Ref" in value:
            return self._ref(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical, attribute = target if isinstance(target, list) else str(target).split(".", 1)
            return self._attribute(logical, attribute)
        if "Fn::Sub" in value:
            text, extra = (value["Fn::Sub"] + [{}])[:2] if isinstance(value["Fn::Sub"], list) else (value["Fn::Sub"], {})

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in extra:
                    return str(self.resolve(extra[name]))
                logical, _, attribute = name.partition(".")
                found = self._attribute(logical, attribute) if attribute else self._ref(logical)
                return "" if found is None else str(found)

            return re.sub(r"\$\{([^}!][^}]*)\}", substitute, text)
        return None

    def _ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self._region, "AWS::AccountId": self._account, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        resource = self._resources.get(name) or {}
        if resource.get("Type") == "AWS::Events::EventBus":  # Ref is the bus name
            return self.resolve((resource.get("Properties") or {}).get("Name"))
        physical = self._physical.get(name)
        if physical and resource.get("Type") == "AWS::SQS::Queue":
            return self._queue_url(physical)  # Ref is the queue URL
        return physical

    def _attribute(self, logical: str, attribute: str) -> Any:
        resource = self._resources.get(logical) or {}
        kind = resource.get("Type")
        physical = self._ref(logical)
        if physical is None:
            return None
        if kind == "AWS::SQS::Queue":
            name = physical.rstrip("/").rsplit("/", 1)[-1]
            if attribute == "QueueName":
                return name
            if attribute == "QueueUrl":
                return physical
            if attribute == "Arn":
                return f"arn:aws:sqs:{self._region}:{self._account}:{name}"
        if kind == "AWS::DynamoDB::Table":
            table = self._clients("dynamodb").describe_table(TableName=physical)["Table"]
            return {"StreamArn": table.get("LatestStreamArn"), "Arn": table.get("TableArn")}.get(attribute)
        if kind == "AWS::Events::EventBus":
            if attribute == "Name":
                return physical
            if attribute == "Arn":
                return self._clients("events").describe_event_bus(Name=physical)["Arn"]
        if kind == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return physical
            if attribute == "TopicName":
                return physical.rsplit(":", 1)[-1]
        return None

    def _queue_url(self, queue: Any) -> str | None:
        """The emulator's URL of a queue given by ARN, URL or name."""
        if not isinstance(queue, str) or not queue:
            return None
        name = queue.rsplit(":", 1)[-1] if queue.startswith("arn:") else queue.rstrip("/").rsplit("/", 1)[-1]
        try:
            return self._clients("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        except Exception:  # noqa: BLE001 - a queue the emulator lacks is reported by the source
            return None
