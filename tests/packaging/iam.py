"""Just enough IAM to check a template's grants against the calls code makes.

- ``permissions_for`` turns one recorded botocore call into the IAM actions and
  resource ARNs it needs (DynamoDB per table and per transaction item, SQS per
  queue, SNS per topic, EventBridge per bus; anything else by action alone).
- ``Resolver`` evaluates a template's Ref / Fn::GetAtt / Fn::Sub / Fn::Join
  against a stack created in moto, so statements become real ARNs.
- ``statements_for_role`` gathers what applies to one role: its inline
  policies and every AWS::IAM::Policy / ManagedPolicy that names it.
- ``allows`` is IAM's evaluation for identity policies: an explicit Deny wins,
  else some Allow must match the action and the resource (wildcards allowed).
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable

#: Operations whose IAM action is not ``<prefix>:<operation>``.
_ACTION_NAMES = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "HeadBucket"): "ListBucket",
}
_TRANSACT_ACTIONS = {"ConditionCheck": "ConditionCheckItem", "Put": "PutItem",
                     "Update": "UpdateItem", "Delete": "DeleteItem", "Get": "GetItem"}


@dataclass(frozen=True)
class Permission:
    action: str  # e.g. dynamodb:PutItem
    resource: str | None  # an ARN, or None where only the action is checked


def permissions_for(prefix: str, operation: str, params: dict[str, Any],
                    region: str, account: str) -> list[Permission]:
    """What IAM must allow for one API call. ``prefix`` is the service's signing name."""
    action = f"{prefix}:{_ACTION_NAMES.get((prefix, operation), operation)}"
    if prefix == "dynamodb":
        def table(name: str) -> str:
            return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"

        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [Permission(action, table(name)) for name in params["RequestItems"]]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            found = []
            for item in params["TransactItems"]:
                (kind, body), = item.items()
                found.append(Permission(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(body["TableName"])))
            return found
        if "TableName" in params:
            arn = table(params["TableName"])
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            return [Permission(action, arn)]
        return [Permission(action, "*")]
    if prefix == "sqs" and "QueueUrl" in params:
        name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
        return [Permission(action, f"arn:aws:sqs:{region}:{account}:{name}")]
    if prefix == "sns" and (params.get("TopicArn") or params.get("TargetArn")):
        return [Permission(action, params.get("TopicArn") or params["TargetArn"])]
    if prefix == "events" and operation == "PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in params["Entries"]}
        return [Permission(action, bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}")
                for bus in sorted(buses)]
    return [Permission(action, None)]


class Unresolvable(Exception):
    pass


class Resolver:
    """Evaluate intrinsic functions against a stack that moto created."""

    def __init__(self, template: dict[str, Any], session: Any, stack_name: str) -> None:
        self.template = template
        self.session = session
        cloudformation = session.client("cloudformation")
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        self.parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
        self.parameters.update({p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])})
        self.physical = {r.get("LogicalResourceId"): r.get("PhysicalResourceId")
                         for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]}
        self.region = session.region_name
        self.account = session.client("sts").get_caller_identity()["Account"]
        self.pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws",
                       "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name}

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                name, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                return self.sub(value)
            if key == "Fn::Join":
                return value[0].join(self(part) for part in value[1])
        return {key: self(value) for key, value in node.items()}

    def ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self._resource(name)
        if resource["Type"] == "AWS::Events::EventBus":  # moto's Ref here is not the name
            return self(resource["Properties"]["Name"])
        physical = self.physical.get(name)
        if not physical:
            raise Unresolvable(f"Ref {name}: not created in the stack")
        return physical

    def get_att(self, name: str, attribute: str) -> str:
        kind = self._resource(name)["Type"]
        if kind == "AWS::DynamoDB::Table":
            table = self.session.client("dynamodb").describe_table(TableName=self.ref(name))["Table"]
            return {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}[attribute]
        if kind == "AWS::SQS::Queue":
            url = self.ref(name)
            if attribute == "QueueName":
                return url.rsplit("/", 1)[-1]
            if attribute == "QueueUrl":
                return url
            attrs = self.session.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            return {"Arn": attrs["Attributes"]["QueueArn"]}[attribute]
        if kind == "AWS::Events::EventBus":
            bus = self.session.client("events").describe_event_bus(Name=self.ref(name))
            return {"Arn": bus["Arn"], "Name": bus["Name"]}[attribute]
        if kind == "AWS::SNS::Topic":
            arn = self.ref(name)
            return {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[-1]}[attribute]
        raise Unresolvable(f"Fn::GetAtt {name}.{attribute} ({kind})")

    def sub(self, value: Any) -> str:
        text, variables = (value[0], value[1]) if isinstance(value, list) else (value, {})
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            expression, _, rest = after.partition("}")
            out.append(before)
            if expression in variables:
                out.append(str(self(variables[expression])))
            elif "." in expression and expression.split(".", 1)[0] not in ("AWS",):
                name, attribute = expression.split(".", 1)
                out.append(self.get_att(name, attribute))
            else:
                out.append(self.ref(expression))
        out.append(rest)
        return "".join(out)

    def _resource(self, name: str) -> dict[str, Any]:
        try:
            return self.template["Resources"][name]
        except KeyError:
            raise Unresolvable(f"{name} is not in the template") from None


def statements_for_role(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every policy statement that applies to the role with logical id ``role``."""
    found = []
    resources = template["Resources"]
    for policy in resources[role]["Properties"].get("Policies", []):
        found.extend(_statements(policy["PolicyDocument"]))
    for resource in resources.values():
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if {"Ref": role} in resource["Properties"].get("Roles", []):
                found.extend(_statements(resource["Properties"]["PolicyDocument"]))
    return found


def role_of(function: dict[str, Any]) -> str:
    role = function["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"a function role made outside the template: {role}"
    target = role["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".")[0]


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(statement: dict[str, Any], permission: Permission, resolve: Resolver) -> bool:
    if "NotAction" in statement or "NotResource" in statement:
        return False  # not used by Nudge; never counted as a grant
    actions = [a.lower() for a in _listed(statement.get("Action", []))]
    if not any(fnmatchcase(permission.action.lower(), pattern) for pattern in actions):
        return False
    if permission.resource is None:
        return True
    patterns = [str(resolve(r)) for r in _listed(statement.get("Resource", []))]
    return any(fnmatchcase(permission.resource, pattern) for pattern in patterns)


def allows(statements: Iterable[dict[str, Any]], permission: Permission, resolve: Resolver) -> bool:
    statements = list(statements)
    if any(s["Effect"] == "Deny" and _matches(s, permission, resolve) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, permission, resolve) for s in statements)
