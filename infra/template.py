"""Read infra/template.yaml and create its resources in any CloudFormation endpoint.

The template has two parts: resources Nudge owns (tables, bus, queues, topics)
and wiring to the functions Chalice generates (their environment, IAM, event
bindings). ``resource_template`` keeps the first part, which is what the local
stack and the deployment test create in the emulator; ``stack_environment``
reads the functions' environment variables off a created stack, so the local
stack's settings come from the same file as the cloud's.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).with_name("template.yaml")


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.safe_load(handle)


def _references(node: Any) -> set[str]:
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub anywhere in ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(part.split("}")[0].split(".")[0] for part in str(text).split("${")[1:])
            found.update(_references(value))
    elif isinstance(node, list):
        for value in node:
            found.update(_references(value))
    return found


def resource_template(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resources that stand on their own: every resource whose references
    all resolve inside the template (not to Chalice's generated functions)."""
    template = copy.deepcopy(template or load_template())
    resources = template.get("Resources", {})
    known = set(resources) | set(template.get("Parameters", {}))
    changed = True
    while changed:  # dropping one resource may orphan another
        changed = False
        for name in list(resources):
            refs = {r for r in _references(resources[name]) if not r.startswith("AWS::")}
            # No Type: an overlay onto a resource Chalice generates (RestAPI).
            if not refs <= known or "Type" not in resources[name]:
                del resources[name]
                known.discard(name)
                changed = True
    environment = function_environment(template)
    template.pop("Globals", None)
    template.pop("Transform", None)
    outputs = {
        name: output for name, output in template.get("Outputs", {}).items()
        if {r for r in _references(output) if not r.startswith("AWS::")} <= known
    }
    # The functions' environment, resolved by the stack itself as outputs.
    for variable, value in environment.items():
        outputs[_output_name(variable)] = {"Value": value}
    if outputs:
        template["Outputs"] = outputs
    return template


def _output_name(variable: str) -> str:
    return "Env" + "".join(part.capitalize() for part in variable.split("_"))


def function_environment(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The environment every function gets (Globals.Function.Environment)."""
    template = template or load_template()
    return template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})


def create_stack(cloudformation: Any, stack_name: str, parameters: dict[str, str] | None = None) -> None:
    """Create (or leave as is) the resource part of the template as a stack."""
    body = json.dumps(resource_template())
    existing = {s["StackName"] for s in cloudformation.list_stacks(
        StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])["StackSummaries"]}
    if stack_name in existing:
        return
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def stack_environment(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The functions' environment variables, resolved against a created stack."""
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {name: outputs[_output_name(name)] for name in function_environment()}


def physical_ids(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """Logical id -> physical id of a created stack's resources. Uses
    describe_stack_resources: moto's describe_stack_resource fails once the
    stack holds a resource it could not create, and lists those without ids."""
    described = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in described
            if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
