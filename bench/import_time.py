"""Cold-start import cost of the built package, against a bare ``import boto3``.

    .venv/bin/python -m bench.import_time [build/package] [--repeat 7]

``measure(package_dir)`` unzips the functions' zip and the dependency layer
that ``make package`` wrote, then, in a fresh interpreter each time (as a
Lambda cold start does), times ``import app`` with PYTHONPATH limited to the
function's directory and the layer's python/ directory (Lambda's /var/task
and /opt/python), and ``import boto3`` with only the layer's python/. Both
use the layer's precompiled bytecode and ``python -S``, so neither sees this
machine's site-packages. Each is repeated (7 times by default) and the
medians are compared: the target is ``ratio <= 1.5``.

Run with ``-X importtime`` to see which modules cost the most
(``--importtime``); that is how to find what to import lazily.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = ROOT / "build" / "package"
TARGET_RATIO = 1.5

_TIMER = ("import sys, time\n"
          "start = time.perf_counter()\n"
          "import {module}\n"
          "sys.stdout.write(repr(time.perf_counter() - start))\n")

#: What Lambda sets before the first import; the stage's own variables come from the template.
_LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "nudge-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "POWERTOOLS_SERVICE_NAME": "nudge",
    "POWERTOOLS_METRICS_NAMESPACE": "Nudge",
}


def unpack(package_dir: Path, into: Path) -> tuple[Path, Path]:
    """Unzip the functions' zip and the layer as Lambda would: (/var/task, /opt/python)."""
    function_zip = package_dir / "deployment.zip"
    layer_zip = package_dir / "layer-deployment.zip"
    for path in (function_zip, layer_zip):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `make package` first")
    task, opt = into / "task", into / "opt"
    with zipfile.ZipFile(function_zip) as archive:
        archive.extractall(task)
    with zipfile.ZipFile(layer_zip) as archive:
        archive.extractall(opt)
    return task, opt / "python"


def time_import(module: str, path: list[Path], extra: list[str] | None = None) -> tuple[float, str]:
    """Seconds ``import module`` takes in a fresh ``python -S``, and its stderr."""
    env = {**_LAMBDA_ENV, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    result = subprocess.run([sys.executable, "-S", *(extra or []), "-c", _TIMER.format(module=module)],
                            capture_output=True, text=True, env=env, cwd=path[0])
    if result.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{result.stderr}")
    return float(result.stdout), result.stderr


def measure(package_dir: Path | str = DEFAULT_PACKAGE, repeat: int = 7) -> dict[str, Any]:
    """Median seconds to import ``app`` from the built package and a bare
    ``boto3``, each in ``repeat`` fresh interpreters, and their ratio."""
    with tempfile.TemporaryDirectory(prefix="nudge-import-") as work:
        task, layer = unpack(Path(package_dir), Path(work))
        app_times, boto3_times = [], []
        for _ in range(repeat):  # interleaved, so both see the same machine load
            app_times.append(time_import("app", [task, layer])[0])
            boto3_times.append(time_import("boto3", [layer])[0])
    app_s, boto3_s = statistics.median(app_times), statistics.median(boto3_times)
    return {
        "app_import_s": app_s,
        "boto3_import_s": boto3_s,
        "ratio": app_s / boto3_s,
        "target_ratio": TARGET_RATIO,
        "repeat": repeat,
        "app_import_samples_s": app_times,
        "boto3_import_samples_s": boto3_times,
    }


def heaviest(package_dir: Path | str = DEFAULT_PACKAGE, top: int = 25) -> list[tuple[int, int, str]]:
    """``python -X importtime`` of ``import app``: (cumulative us, self us, module), heaviest first."""
    with tempfile.TemporaryDirectory(prefix="nudge-import-") as work:
        task, layer = unpack(Path(package_dir), Path(work))
        _, stderr = time_import("app", [task, layer], ["-X", "importtime"])
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:"):].split("|"))
        rows.append((int(cumulative_us), int(self_us), name))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", nargs="?", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--importtime", action="store_true", help="also list the heaviest imports of app")
    args = parser.parse_args(argv)
    result = measure(args.package_dir, args.repeat)
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("samples_s")}, indent=2))
    if args.importtime:
        print(f"{'cumulative ms':>14} {'self ms':>8}  module")
        for cumulative, own, name in heaviest(args.package_dir):
            print(f"{cumulative / 1000:14.1f} {own / 1000:8.1f}  {name}")
    return 0 if result["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
