"""`make deploy` cannot reach AWS here; its upload step and its errors can be checked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from layers import deploy


def test_without_a_bucket_it_says_which_variable_to_set(package_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(deploy.BUCKET_VARIABLE, raising=False)
    with pytest.raises(deploy.DeployError, match=deploy.BUCKET_VARIABLE):
        deploy.deploy("dev", package_dir, "nudge-dev", {})


def test_a_package_built_for_another_stage_is_refused(package_dir: Path) -> None:
    with pytest.raises(deploy.DeployError, match="make package STAGE=prod"):
        deploy.load_package(package_dir, "prod")


def test_a_missing_bucket_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():
        with pytest.raises(deploy.DeployError, match="does not exist"):
            deploy.check_bucket(boto3.client("s3", region_name="us-east-1"), "no-such-bucket")


def test_artifacts_are_uploaded_once_and_the_template_points_at_them(package_dir: Path) -> None:
    template = deploy.load_package(package_dir, "dev")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        deploy.upload_artifacts(template, package_dir, s3, "artifacts", "nudge/dev")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"])
        assert len(keys) == 2  # one function zip shared by every function, one layer
        locations = [r["Properties"].get("CodeUri") or r["Properties"].get("ContentUri")
                     for r in template["Resources"].values()
                     if r["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")]
        assert locations and all(loc.startswith("s3://artifacts/nudge/dev/") for loc in locations)
        # Packaging again changes nothing, so nothing new is uploaded.
        again = deploy.load_package(package_dir, "dev")
        deploy.upload_artifacts(again, package_dir, s3, "artifacts", "nudge/dev")
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"]) == keys
        assert again == template
        url = deploy.upload_template(template, s3, "artifacts", "nudge/dev")
        key = url.split("/artifacts/", 1)[1]
        uploaded: Any = yaml.safe_load(s3.get_object(Bucket="artifacts", Key=key)["Body"].read())
        assert uploaded["Transform"] == "AWS::Serverless-2016-10-31"
