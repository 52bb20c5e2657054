"""The built package, made once per test session.

``make package``'s own code builds into a temporary directory; the dependency
layer comes from build/cache/ when an identical build is there (the layer test
that checks reproducibility builds one afresh).
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from layers import package as packaging

STAGE = "dev"


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "package"
    packaging.package(STAGE, out)
    return out


@pytest.fixture(scope="session")
def merged_template(package_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((package_dir / packaging.TEMPLATE).read_text())


@pytest.fixture(scope="session")
def unpacked(package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The function zip and the layer unzipped as Lambda does: (/var/task, /opt/python)."""
    root = tmp_path_factory.mktemp("lambda")
    with zipfile.ZipFile(package_dir / packaging.FUNCTION_ZIP) as archive:
        archive.extractall(root / "task")
    with zipfile.ZipFile(package_dir / packaging.LAYER_ZIP) as archive:
        archive.extractall(root / "opt")
    return root / "task", root / "opt" / "python"


def functions_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of every Lambda function in the template."""
    return {name: resource["Properties"] for name, resource in template["Resources"].items()
            if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")}


@pytest.fixture
def quiet_moto() -> Iterator[None]:
    """moto's CloudFormation skips, with a warning, the types it cannot create
    (the queue policy and the alarm); the template tests check those instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not supported by moto's CloudFormation.*")
        yield
