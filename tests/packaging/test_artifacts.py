"""The two zips Lambda gets: code only in one, the dependencies once in the
other, both precompiled, and every handler of the template importable from
them alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from layers import package as packaging
from tests.packaging.conftest import functions_of

ROOT = Path(__file__).resolve().parents[2]
PYC_TAG = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def top_level(entries: list[str], prefix: str = "") -> set[str]:
    found = set()
    for entry in entries:
        if entry.startswith(prefix):
            first = entry[len(prefix):].split("/", 1)[0]
            if not first.endswith((".dist-info", ".data")) and first != "__pycache__":
                found.add(first.removesuffix(".py"))
    return found


def without_bytecode(entries: list[str]) -> list[str]:
    return [e for e in entries if e.endswith(".py")]


def bytecode_for(source: str) -> str:
    folder, _, module = source.rpartition("/")
    return f"{folder}/__pycache__/{module[:-3]}.{PYC_TAG}.pyc".lstrip("/")


def test_the_function_zip_holds_the_code_and_no_dependency(package_dir: Path) -> None:
    code = names(package_dir / packaging.FUNCTION_ZIP)
    layer = names(package_dir / packaging.LAYER_ZIP)
    assert top_level(code) & top_level(layer, "python/") == set()
    assert {"app", "chalice", "chalicelib", "functions"} <= top_level(code)
    # functions/ travels through the committed symlink vendor/functions.
    assert os.path.islink(ROOT / "vendor" / "functions")
    shipped = {e for e in code if e.startswith("functions/") and e.endswith(".py")}
    expected = {f"functions/{p.name}" for p in (ROOT / "functions").glob("*.py")}
    assert shipped == expected
    assert not [e for e in code if e.startswith(("botocore/", "boto3/", "pynamodb/", "aws_lambda_powertools/"))]


def test_every_module_is_precompiled(package_dir: Path) -> None:
    for artifact in (packaging.FUNCTION_ZIP, packaging.LAYER_ZIP):
        entries = names(package_dir / artifact)
        missing = [s for s in without_bytecode(entries) if bytecode_for(s) not in entries]
        assert not missing, f"{artifact}: no .pyc for {missing[:5]}"


def test_the_layer_holds_exactly_one_botocore_and_no_noise(package_dir: Path) -> None:
    entries = names(package_dir / packaging.LAYER_ZIP)
    assert all(e.startswith("python/") for e in entries)
    assert [e for e in entries if e.endswith("botocore/__init__.py")] == ["python/botocore/__init__.py"]
    assert len([e for e in entries if e.split("/")[1].startswith("botocore-")
                and e.endswith(".dist-info/METADATA")]) == 1
    assert not [e for e in entries if e.startswith("python/bin/")]
    assert not [e for e in entries if "/tests/" in e or e.endswith("examples-1.json")]
    # Together with the function zip: still one botocore.
    assert not [e for e in names(package_dir / packaging.FUNCTION_ZIP) if "botocore" in e]


def test_every_distribution_in_the_layer_is_pinned(package_dir: Path) -> None:
    info = json.loads((package_dir / packaging.BUILD_INFO).read_text())
    assert info["unpinned"] == {}, (
        "the layer holds versions that neither requirements.txt nor layers/constraints.txt pins; "
        f"add these lines to layers/constraints.txt: {info['unpinned']}")


def test_zip_entries_are_sorted_with_fixed_times(package_dir: Path) -> None:
    for artifact in (packaging.FUNCTION_ZIP, packaging.LAYER_ZIP):
        with zipfile.ZipFile(package_dir / artifact) as archive:
            infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_the_layer_build_is_reproducible(package_dir: Path, tmp_path: Path) -> None:
    """A fresh build (no cache, another directory) gives the very same bytes."""
    again = packaging.build_layer(tmp_path / "again" / packaging.LAYER_ZIP, use_cache=False)
    assert packaging.sha256(again) == packaging.sha256(package_dir / packaging.LAYER_ZIP)


def test_the_function_zip_is_reproducible(package_dir: Path, tmp_path: Path) -> None:
    """Its sources, compiled and zipped again, give the very same bytes.
    (From the zip's own sources, so edits to the work tree meanwhile do not matter.)"""
    tree = tmp_path / "task"
    with zipfile.ZipFile(package_dir / packaging.FUNCTION_ZIP) as archive:
        for name in archive.namelist():
            if not name.endswith(".pyc"):
                archive.extract(name, tree)
    again = packaging.zip_code(tree, tmp_path / packaging.FUNCTION_ZIP)
    assert packaging.sha256(again) == packaging.sha256(package_dir / packaging.FUNCTION_ZIP)


def test_every_function_uses_the_layer_built_here(merged_template: dict[str, Any]) -> None:
    functions = functions_of(merged_template)
    assert functions
    layers = {name: r for name, r in merged_template["Resources"].items()
              if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert len(layers) == 1
    (layer_id, layer), = layers.items()
    assert layer["Properties"]["ContentUri"] == f"./{packaging.LAYER_ZIP}"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    for name, properties in functions.items():
        assert properties["Layers"] == [{"Ref": layer_id}], name
        assert properties["CodeUri"] == f"./{packaging.FUNCTION_ZIP}", name
        assert properties["Runtime"] == "python3.11", name


# What Lambda does with a handler string, in a fresh interpreter that sees only
# the unzipped artifacts (python -S: no site-packages of this machine).
_LAMBDA_IMPORT = textwrap.dedent("""
    import importlib, json, os, pkgutil, sys
    task, layer, handlers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    report = {"handlers": {}, "modules": {}, "origins": {}}
    for handler in handlers:
        module_name, _, attribute = handler.rpartition(".")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
            report["handlers"][handler] = "ok" if callable(target) else "not callable"
        except Exception as exc:
            report["handlers"][handler] = f"{type(exc).__name__}: {exc}"
    # Every module of the function zip, including those imported lazily on first use.
    for root, packages in ((task, ["chalicelib", "functions"]),):
        for package in packages:
            for info in pkgutil.walk_packages([os.path.join(root, package)], package + "."):
                try:
                    importlib.import_module(info.name)
                    report["modules"][info.name] = "ok"
                except Exception as exc:
                    report["modules"][info.name] = f"{type(exc).__name__}: {exc}"
    import boto3  # what the adapters' clients use; must come from the layer too
    for name in ("app", "chalice", "chalicelib", "functions", "botocore", "boto3", "pynamodb",
                 "aws_lambda_powertools"):
        module = sys.modules.get(name)
        report["origins"][name] = getattr(module, "__file__", None)
    print(json.dumps(report))
""")


def lambda_python(unpacked: tuple[Path, Path], code: str, *args: str) -> Any:
    task, layer = unpacked
    env = {"PYTHONPATH": f"{task}{os.pathsep}{layer}", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "LANG": "C.UTF-8", "POWERTOOLS_SERVICE_NAME": "nudge",
           "POWERTOOLS_METRICS_NAMESPACE": "Nudge", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-S", "-c", code, str(task), str(layer), *args],
                            capture_output=True, text=True, env=env, cwd=task, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_handler_and_module_imports_from_the_artifacts(
        merged_template: dict[str, Any], unpacked: tuple[Path, Path]) -> None:
    handlers = sorted({p["Handler"] for p in functions_of(merged_template).values()})
    assert "app.app" in handlers and len(handlers) >= 2
    report = lambda_python(unpacked, _LAMBDA_IMPORT, json.dumps(handlers))
    assert report["handlers"] == {h: "ok" for h in handlers}
    assert report["modules"] and set(report["modules"].values()) == {"ok"}, report["modules"]
    task, layer = unpacked
    for name in ("app", "chalice", "chalicelib", "functions"):
        assert report["origins"][name].startswith(str(task)), (name, report["origins"][name])
    for name in ("botocore", "boto3", "pynamodb", "aws_lambda_powertools"):
        assert report["origins"][name].startswith(str(layer)), (name, report["origins"][name])


_INVOKE = textwrap.dedent("""
    import importlib, io, json, sys
    from contextlib import redirect_stdout
    task, layer, handler, event = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    class Context:
        function_name = "nudge-test"; memory_limit_in_mb = 128; aws_request_id = "req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nudge-test"
        log_group_name = log_stream_name = "test"
        def get_remaining_time_in_millis(self): return 30000
    module_name, _, attribute = handler.rpartition(".")
    function = getattr(importlib.import_module(module_name), attribute)
    printed = io.StringIO()
    with redirect_stdout(printed):
        result = function(event, Context())
    print(json.dumps({"result": result, "printed": printed.getvalue(),
                      "middleware": len(getattr(function, "middleware_handlers", []) or [])}))
""")


def _health_event() -> dict[str, Any]:
    return {
        "resource": "/health", "path": "/health", "httpMethod": "GET",
        "headers": {"x-request-id": "r-1"}, "multiValueHeaders": {"x-request-id": ["r-1"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/health", "httpMethod": "GET", "path": "/api/health",
                           "requestId": "r-1", "stage": "api", "identity": {"sourceIp": "127.0.0.1"}},
    }


def test_the_api_handler_answers_from_the_artifacts(unpacked: tuple[Path, Path]) -> None:
    report = lambda_python(unpacked, _INVOKE, "app.app", json.dumps(_health_event()))
    assert report["result"]["statusCode"] == 200
    assert json.loads(report["result"]["body"]) == {"status": "ok"}


def _unparseable_bus_event() -> dict[str, Any]:
    # A call that breaks Segment's rules: logged, counted, not retried, no AWS call.
    return {"version": "0", "id": "e-1", "detail-type": "track", "source": "tests",
            "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"event": "Order Completed"}}


def _bus_handler(template: dict[str, Any]) -> str:
    handlers = [p["Handler"] for p in functions_of(template).values() if p["Handler"].endswith(".on_bus_event")]
    assert len(handlers) == 1
    return handlers[0]


def test_the_bus_handler_runs_from_the_artifacts(merged_template: dict[str, Any],
                                                 unpacked: tuple[Path, Path]) -> None:
    report = lambda_python(unpacked, _INVOKE, _bus_handler(merged_template), json.dumps(_unparseable_bus_event()))
    assert report["result"] == {"accepted": 0, "duplicates": 0}


def test_the_bus_handler_publishes_its_metrics_in_lambda(merged_template: dict[str, Any],
                                                         unpacked: tuple[Path, Path]) -> None:
    report = lambda_python(unpacked, _INVOKE, _bus_handler(merged_template), json.dumps(_unparseable_bus_event()))
    assert "RejectedEvents" in report["printed"]  # the Embedded Metric Format line Lambda would log
