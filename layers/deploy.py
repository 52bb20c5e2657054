"""Deploy what `make package` built, with CloudFormation.

    NUDGE_ARTIFACT_BUCKET=my-bucket .venv/bin/python -m layers.deploy --stage prod \\
        [--package build/package] [--stack-name nudge-prod] [--parameter EventBusName=nudge-prod]

What ``aws cloudformation package`` and ``deploy`` would do, with boto3:

1. Each local file the template names (``CodeUri``, ``ContentUri``,
   ``DefinitionUri``) goes to ``s3://$NUDGE_ARTIFACT_BUCKET/nudge/<stage>/<sha256>``,
   once: the artifacts are reproducible, so an unchanged one keeps its key,
   CloudFormation sees no change, and no new layer version is published.
2. The template goes there too (SAM output soon outgrows the 51,200 bytes
   allowed inline).
3. A change set (create or update) with CAPABILITY_IAM and
   CAPABILITY_AUTO_EXPAND (the SAM transform) is made, listed, executed and
   waited for; the stack's outputs (the API's URL) are printed.

Needs AWS credentials, a region, and a bucket in that region. The custom bus's
name is a template parameter (``EventBusName``, default ``nudge``); give each
stage deployed in one account its own, e.g. ``--parameter EventBusName=nudge-dev``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUCKET_VARIABLE = "NUDGE_ARTIFACT_BUCKET"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
#: Properties of SAM resources that name a local file to upload.
_ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
}


class DeployError(Exception):
    """Why the deployment cannot go on, said so that the reader can fix it."""


def load_package(package_dir: Path, stage: str) -> dict[str, Any]:
    template_path = package_dir / "sam.yaml"
    if not template_path.is_file():
        raise DeployError(f"{template_path} is missing: run `make package STAGE={stage}` first")
    info_path = package_dir / "build-info.json"
    if info_path.is_file():
        built_for = json.loads(info_path.read_text()).get("stage")
        if built_for != stage:
            raise DeployError(f"{package_dir} was built for stage {built_for!r}, not {stage!r}: "
                              f"run `make package STAGE={stage}`")
    return yaml.safe_load(template_path.read_text())


def upload_artifacts(template: dict[str, Any], package_dir: Path, s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """Upload the local files ``template`` names and point it at their S3 copies (in place)."""
    uploaded: dict[Path, str] = {}
    for name, resource in template.get("Resources", {}).items():
        prop = _ARTIFACT_PROPERTIES.get(resource.get("Type", ""))
        location = (resource.get("Properties") or {}).get(prop or "")
        if not prop or not isinstance(location, str) or location.startswith("s3://"):
            continue
        path = (package_dir / location).resolve()
        if not path.is_file():
            raise DeployError(f"{name}.{prop} names {location}, which is not in {package_dir}")
        if path not in uploaded:
            key = f"{prefix}/{hashlib.sha256(path.read_bytes()).hexdigest()}{path.suffix}"
            if not _exists(s3, bucket, key):
                print(f"uploading {path.name} to s3://{bucket}/{key}")
                s3.upload_file(str(path), bucket, key)
            uploaded[path] = f"s3://{bucket}/{key}"
        resource["Properties"][prop] = uploaded[path]
    return template


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload_template(template: dict[str, Any], s3: Any, bucket: str, prefix: str) -> str:
    body = json.dumps(template, indent=1, sort_keys=True).encode()
    key = f"{prefix}/template-{hashlib.sha256(body).hexdigest()[:16]}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"{s3.meta.endpoint_url}/{bucket}/{key}"


def check_bucket(s3: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket"):
            raise DeployError(f"the bucket {bucket!r} ({BUCKET_VARIABLE}) does not exist; "
                              f"create it in the deployment's region first") from exc
        if code in ("403", "AccessDenied"):
            raise DeployError(f"these credentials may not use the bucket {bucket!r} ({BUCKET_VARIABLE})") from exc
        raise


def deploy_stack(cloudformation: Any, stack_name: str, template_url: str, parameters: dict[str, str],
                 stage: str) -> dict[str, str]:
    """Create or update ``stack_name`` through a change set; return the stack's outputs."""
    change_type = "UPDATE" if _stack_is_live(cloudformation, stack_name) else "CREATE"
    change_set = f"nudge-{int(time.time())}"
    cloudformation.create_change_set(
        StackName=stack_name, ChangeSetName=change_set, ChangeSetType=change_type,
        TemplateURL=template_url, Capabilities=CAPABILITIES,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        Tags=[{"Key": "nudge:stage", "Value": stage}],
    )
    try:
        cloudformation.get_waiter("change_set_create_complete").wait(
            StackName=stack_name, ChangeSetName=change_set, WaiterConfig={"Delay": 5, "MaxAttempts": 120})
    except Exception:
        described = cloudformation.describe_change_set(StackName=stack_name, ChangeSetName=change_set)
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates" in reason:
            cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            print(f"{stack_name}: no changes")
            return _outputs(cloudformation, stack_name)
        raise DeployError(f"the change set for {stack_name} failed: {reason}")
    described = cloudformation.describe_change_set(StackName=stack_name, ChangeSetName=change_set)
    for change in described.get("Changes", []):
        detail = change.get("ResourceChange", {})
        print(f"  {detail.get('Action', '?'):8} {detail.get('LogicalResourceId')} ({detail.get('ResourceType')})")
    cloudformation.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    waiter = "stack_create_complete" if change_type == "CREATE" else "stack_update_complete"
    print(f"{stack_name}: {change_type.lower()} in progress")
    try:
        cloudformation.get_waiter(waiter).wait(StackName=stack_name, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    except Exception as exc:
        raise DeployError(f"{stack_name} did not {change_type.lower()}: see its events in the CloudFormation "
                          f"console ({exc})") from exc
    return _outputs(cloudformation, stack_name)


def _stack_is_live(cloudformation: Any, stack_name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return False
        raise
    # A stack whose first creation never ran (REVIEW_IN_PROGRESS) still takes a CREATE change set.
    return bool(stacks) and stacks[0]["StackStatus"] != "REVIEW_IN_PROGRESS"


def _outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy(stage: str, package_dir: Path, stack_name: str, parameters: dict[str, str]) -> dict[str, str]:
    bucket = os.environ.get(BUCKET_VARIABLE, "").strip()
    if not bucket:
        raise DeployError(f"set {BUCKET_VARIABLE} to an S3 bucket, in the region you deploy to, "
                          f"that these AWS credentials may write to")
    template = load_package(package_dir, stage)
    import boto3
    from botocore.exceptions import NoCredentialsError, NoRegionError

    try:
        session = boto3.session.Session()
        if not session.region_name:
            raise DeployError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
        s3 = session.client("s3")
        cloudformation = session.client("cloudformation")
        check_bucket(s3, bucket)
        prefix = f"nudge/{stage}"
        upload_artifacts(template, package_dir, s3, bucket, prefix)
        url = upload_template(template, s3, bucket, prefix)
        return deploy_stack(cloudformation, stack_name, url, parameters, stage)
    except NoCredentialsError as exc:
        raise DeployError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, for the account to deploy to") from exc
    except NoRegionError as exc:
        raise DeployError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from exc


def _parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--package", type=Path, default=ROOT / "build" / "package", help="what make package built")
    parser.add_argument("--stack-name", help="default: nudge-STAGE")
    parser.add_argument("--parameter", type=_parameter, action="append", default=[],
                        help="template parameter KEY=VALUE (EventBusName, AlarmTopicArn); repeatable")
    args = parser.parse_args(argv)
    try:
        outputs = deploy(args.stage, args.package, args.stack_name or f"nudge-{args.stage}", dict(args.parameter))
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    for key, value in sorted(outputs.items()):
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
