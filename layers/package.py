"""Build what `make deploy` ships: the merged SAM template, the functions' zip
and the dependency layer.

    .venv/bin/python -m layers.package --stage dev --out build/package

OUT then holds:

``sam.yaml``
    ``chalice package --merge-template infra/template.yaml``: Chalice's SAM
    template with Nudge's resources and wiring merged in.
``deployment.zip``
    The functions' code and nothing else: app.py, Chalice's runtime
    (chalice/), chalicelib/ and all of vendor/ (so functions/, through the
    committed symlink vendor/functions), with bytecode compiled for /var/task.
``layer-deployment.zip``
    The dependency layer: requirements.txt installed for Lambda under
    ``python/``, with bytecode compiled for /opt/python.
``build-info.json``
    Sizes and SHA-256 of both zips and the layer's distributions.

How Chalice takes part
----------------------
``"automatic_layer": true`` in .chalice/config.json makes Chalice give every
function its ``ManagedLayer`` (an AWS::Serverless::LayerVersion whose
ContentUri is ``./layer-deployment.zip``). Chalice's own build of that layer is
not what Lambda should get: it ships no .pyc (/opt is read-only, so every cold
start compiles every module it imports: about 0.6 s), its zip changes on every
build, and it puts vendor/, so functions/, into the *layer*, which would make
each code change a new layer version. So ``chalice package`` runs with its
layer packager handed the layer built here (layers/_chalice.py): Chalice wires
it to every function and copies it into OUT, and downloads nothing. In that
mode Chalice's function zip has no vendor/; it is rebuilt here with vendor/,
without whatever .pyc the developer's machine left in chalicelib/, and
precompiled.

A reproducible layer
--------------------
- pip installs requirements.txt, constrained by layers/constraints.txt (the
  pins of the transitive dependencies), for manylinux2014_x86_64 and CPython
  3.11, ``--only-binary=:all:``, ``--target python/`` (Lambda puts
  /opt/python on sys.path).
- Dropped: bin/ (console scripts whose first line names this machine's
  interpreter), __pycache__, test directories, and botocore's
  ``examples-1.json`` files (documentation examples that botocore reads only
  to write docs; 2.6 MB).
- Bytecode: compileall with unchecked-hash invalidation (valid whatever the
  files' times, never re-checked against the source: the layer is immutable),
  with the path Lambda will see as ``ddir``, in a fresh interpreter with
  PYTHONHASHSEED=0 and a single worker, so that set constants and marshal's
  output come out the same on every build.
- The zip: entries sorted, every timestamp 1980-01-01, permissions 644 or 755,
  deflate level 9. The same inputs give the same bytes (tests/packaging builds
  twice and compares). The finished layer is cached in build/cache/ under the
  SHA-256 of everything that goes into it (requirements, constraints, this
  file, the interpreter's version); ``--no-cache`` builds afresh.

boto3 and botocore: one pinned copy, in the layer
-------------------------------------------------
PynamoDB is built on botocore, the AWS adapters use boto3, and the python3.11
runtime carries its own boto3 and botocore in /var/runtime. The layer ships
the boto3 and botocore pinned in requirements.txt, once; the function zip
carries no dependency at all (both checked here and in tests/packaging). As
/opt/python comes before /var/runtime on Lambda's sys.path, the runtime's copy
is never imported: one botocore in memory, the version the tests ran against,
not whichever one the runtime carries this month (AWS updates it on its own
schedule, and behaviour such as account-based DynamoDB endpoints, see
AWS_ACCOUNT_ID_ENDPOINT_MODE in tests/conftest.py, depends on that version).

Measured here (2 cores; layer as built on 2 Dec 2026, with python-liquid and
PyYAML in requirements.txt): the layer is 34.2 MB zipped, 72.2 MB unzipped, of
which boto3 + botocore + s3transfer are 17.4 MB zipped, 23.6 MB unzipped
(babel, which python-liquid brings, is 11.0 / 34.1 MB). Leaving the SDK out
would halve the download but not the import time, which is what a cold start
feels: ``import boto3`` from the layer's bytecode takes ~0.12 s, ``import app``
~0.06 s (bench/import_time.py; app defers PynamoDB, so botocore is first
imported by the first request, ~0.08 s more). 72 MB is far from Lambda's 250 MB
unzipped limit for function + layers. So: one pinned copy, in the layer.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
CONSTRAINTS = Path(__file__).with_name("constraints.txt")
MERGE_TEMPLATE = ROOT / "infra" / "template.yaml"
CACHE_DIR = ROOT / "build" / "cache"

PYTHON_VERSION = (3, 11)
PLATFORM = "manylinux2014_x86_64"
FUNCTION_ZIP = "deployment.zip"  # the names Chalice's template points at
LAYER_ZIP = "layer-deployment.zip"
TEMPLATE = "sam.yaml"
BUILD_INFO = "build-info.json"
#: Where Lambda unpacks each artifact; compiled into the bytecode's file names.
FUNCTION_ROOT = "/var/task"
LAYER_ROOT = "/opt"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_DROPPED_DIRS = {"__pycache__", "tests", "test"}
_DROPPED_FILES = {"examples-1.json"}  # botocore/data/<service>/<version>/examples-1.json
_COMPILE = """
import compileall, py_compile, sys
ok = compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=1, workers=1,
                            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
sys.exit(0 if ok else 1)
"""


class PackagingError(Exception):
    """The package cannot be built, or what was built breaks a rule."""


# --- the dependency layer ---------------------------------------------------------------------

def layer_key() -> str:
    """SHA-256 of everything the layer's bytes depend on."""
    digest = hashlib.sha256()
    for part in (REQUIREMENTS.read_bytes(), CONSTRAINTS.read_bytes(), Path(__file__).read_bytes(),
                 sys.version.encode(), PLATFORM.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def build_layer(target: Path, *, use_cache: bool = True) -> Path:
    """Write the dependency layer zip to ``target`` (from the cache when it holds this build)."""
    _check_interpreter()
    cached = CACHE_DIR / f"layer-{layer_key()[:20]}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    if use_cache and cached.is_file():
        shutil.copyfile(cached, target)
        return target
    with tempfile.TemporaryDirectory(prefix="nudge-layer-") as work:
        site = Path(work) / "python"
        _pip_install(site)
        _prune(site)
        _compile(site, f"{LAYER_ROOT}/python")
        built = Path(work) / LAYER_ZIP
        write_zip(Path(work), built, only=["python"])
        check_layer(built)
        if use_cache:  # keep only this build; safe when two builds run at once
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            for old in CACHE_DIR.glob("layer-*.zip"):
                if old != cached:
                    old.unlink(missing_ok=True)
            handle, partial = tempfile.mkstemp(dir=CACHE_DIR, suffix=".partial")
            os.close(handle)
            shutil.copyfile(built, partial)
            os.replace(partial, cached)
        shutil.copyfile(built, target)
    return target


def _check_interpreter() -> None:
    if sys.version_info[:2] != PYTHON_VERSION:
        raise PackagingError(
            f"build with Python {'.'.join(map(str, PYTHON_VERSION))}, the functions' runtime: "
            f"the precompiled .pyc must match it (this is {sys.version.split()[0]})")


def _pip_install(site: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        "--no-compile", "--no-warn-script-location",
        "--target", str(site),
        "--platform", PLATFORM, "--implementation", "cp",
        "--python-version", ".".join(map(str, PYTHON_VERSION)),
        "--abi", "cp" + "".join(map(str, PYTHON_VERSION)),
        "--only-binary=:all:",
        "-r", str(REQUIREMENTS), "-c", str(CONSTRAINTS),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackagingError(f"pip could not install the layer's dependencies:\n{result.stdout}{result.stderr}")


def _prune(site: Path) -> None:
    shutil.rmtree(site / "bin", ignore_errors=True)
    for root, dirs, files in os.walk(site):
        for name in [d for d in dirs if d in _DROPPED_DIRS]:
            shutil.rmtree(Path(root, name))
            dirs.remove(name)
        for name in files:
            if name in _DROPPED_FILES or name.endswith(".pyc"):
                Path(root, name).unlink()


def _compile(tree: Path, lambda_path: str) -> None:
    """Precompile every module of ``tree`` reproducibly, naming files as Lambda will see them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    result = subprocess.run([sys.executable, "-s", "-c", _COMPILE, str(tree), lambda_path],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise PackagingError(f"compiling {tree} failed:\n{result.stdout}{result.stderr}")


def distributions(site: Path | zipfile.ZipFile) -> dict[str, str]:
    """Normalised distribution name -> version, from the dist-info directories."""
    if isinstance(site, zipfile.ZipFile):
        names = {n.split("/")[1] for n in site.namelist() if n.count("/") >= 2}
    else:
        names = {p.name for p in site.iterdir()}
    found = {}
    for name in names:
        if name.endswith(".dist-info"):
            dist, _, version = name[: -len(".dist-info")].partition("-")
            found[normalise(dist)] = version
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    """Distribution -> version pinned by requirements.txt and layers/constraints.txt."""
    pins = {}
    for path in (REQUIREMENTS, CONSTRAINTS):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, _, version = line.partition("==")
                pins[normalise(name.split("[")[0])] = version.strip()
    return pins


def unpinned(installed: dict[str, str]) -> dict[str, str]:
    """Installed distributions whose version neither pin file fixes."""
    pins = pinned()
    return {name: version for name, version in sorted(installed.items()) if pins.get(name) != version}


def top_level_names(names: Iterable[str], prefix: str = "") -> set[str]:
    """Importable top-level names (packages and modules) of zip entries under ``prefix``."""
    found = set()
    for name in names:
        if not name.startswith(prefix):
            continue
        first = name[len(prefix):].split("/", 1)[0]
        if first.endswith((".dist-info", ".data")) or first in ("", "__pycache__"):
            continue
        found.add(first[:-3] if first.endswith(".py") else first)
    return found


def check_layer(path: Path) -> None:
    """The layer's rules: everything under python/, .pyc beside the sources, one botocore."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    outside = [n for n in names if not n.startswith("python/")]
    if outside:
        raise PackagingError(f"layer entries outside python/: {outside[:5]}")
    sources = {n for n in names if n.endswith(".py")}
    compiled = {n for n in names if n.endswith(".pyc")}
    missing = [s for s in sorted(sources) if _pyc_name(s) not in compiled]
    if missing:
        raise PackagingError(f"layer sources without .pyc: {missing[:5]}")
    botocores = [n for n in names if n.endswith("botocore/__init__.py")]
    if botocores != ["python/botocore/__init__.py"]:
        raise PackagingError(f"the layer must hold exactly one botocore, at python/botocore: {botocores}")


def _pyc_name(source: str) -> str:
    folder, _, module = source.rpartition("/")
    tag = f"cpython-{PYTHON_VERSION[0]}{PYTHON_VERSION[1]}"
    return f"{folder}/__pycache__/{module[:-3]}.{tag}.pyc" if folder else f"__pycache__/{module[:-3]}.{tag}.pyc"


# --- the functions' zip -----------------------------------------------------------------------

def build_function_zip(chalice_zip: Path, target: Path, project_dir: Path = ROOT) -> Path:
    """Chalice's app-only zip plus vendor/, without stray .pyc, precompiled, reproducible."""
    _check_interpreter()
    with tempfile.TemporaryDirectory(prefix="nudge-function-") as work:
        tree = Path(work) / "task"
        with zipfile.ZipFile(chalice_zip) as archive:
            for info in archive.infolist():
                parts = info.filename.split("/")
                if info.is_dir() or "__pycache__" in parts or info.filename.endswith(".pyc"):
                    continue
                archive.extract(info, tree)
        vendor = project_dir / "vendor"
        if vendor.is_dir():
            for entry in sorted(vendor.iterdir()):
                destination = tree / entry.name
                if destination.exists():
                    raise PackagingError(f"vendor/{entry.name} would overwrite the app's own {entry.name}")
                if entry.is_dir():  # follows the symlink vendor/functions -> ../functions
                    shutil.copytree(entry, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copyfile(entry, destination)
        built = zip_code(tree, Path(work) / FUNCTION_ZIP)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)
    return target


def zip_code(tree: Path, target: Path) -> Path:
    """Precompile the function code in ``tree`` for /var/task and zip it reproducibly."""
    _compile(tree, FUNCTION_ROOT)
    write_zip(tree, target)
    return target


def check_function_zip(path: Path, layer: Path) -> None:
    """The functions' zip carries app code only: nothing that the layer provides."""
    with zipfile.ZipFile(path) as archive:
        code = top_level_names(archive.namelist())
    with zipfile.ZipFile(layer) as archive:
        deps = top_level_names(archive.namelist(), "python/")
    twice = sorted(code & deps)
    if twice:
        raise PackagingError(f"dependencies inside the functions' zip (they belong in the layer): {twice}")
    if (ROOT / "vendor" / "functions").exists() and "functions" not in code:
        raise PackagingError("functions/ is missing from the functions' zip")


# --- zips -------------------------------------------------------------------------------------

def write_zip(source: Path, target: Path, only: Iterable[str] | None = None) -> None:
    """Zip ``source`` so the same files give the same bytes: sorted entries,
    fixed times and permissions, no directory entries."""
    files = []
    for top in (only or [""]):
        for root, dirs, names in os.walk(source / top):
            dirs.sort()
            for name in names:
                path = Path(root, name)
                files.append((path.relative_to(source).as_posix(), path))
    files.sort()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for arcname, path in files:
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.create_system = 3  # unix, so external_attr holds the mode
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unzipped_size(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


# --- the whole package ------------------------------------------------------------------------

def run_chalice(stage: str, out: Path, layer_zip: Path, project_dir: Path = ROOT) -> None:
    env = dict(os.environ)
    # chalice package needs a region to start; the template it writes names none.
    if not (env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")):
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    command = [sys.executable, "-m", "layers._chalice", str(layer_zip),
               "--project-dir", str(project_dir), "package", "--stage", stage,
               "--merge-template", str(MERGE_TEMPLATE), "--template-format", "yaml", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0 or not (out / TEMPLATE).is_file():
        raise PackagingError(f"chalice package failed:\n{result.stdout}{result.stderr}")


def package(stage: str, out: Path, *, use_cache: bool = True) -> dict[str, Any]:
    """Build the whole package into ``out`` (replacing it) and return its build info."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        layer = build_layer(staging / "layer" / LAYER_ZIP, use_cache=use_cache)
        chalice_out = staging / "out"
        run_chalice(stage, chalice_out, layer)
        if sha256(chalice_out / LAYER_ZIP) != sha256(layer):
            raise PackagingError("chalice package did not ship the layer built here")
        build_function_zip(chalice_out / FUNCTION_ZIP, chalice_out / FUNCTION_ZIP)
        check_function_zip(chalice_out / FUNCTION_ZIP, chalice_out / LAYER_ZIP)
        info = build_info(stage, chalice_out)
        (chalice_out / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(chalice_out, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def build_info(stage: str, out: Path) -> dict[str, Any]:
    with zipfile.ZipFile(out / LAYER_ZIP) as archive:
        installed = distributions(archive)
    return {
        "stage": stage,
        "runtime": "python{}.{}".format(*PYTHON_VERSION),
        "platform": PLATFORM,
        "artifacts": {
            name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size,
                   "unzipped_bytes": unzipped_size(out / name)}
            for name in (FUNCTION_ZIP, LAYER_ZIP)
        },
        "layer_distributions": installed,
        "unpinned": unpinned(installed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev", help="Chalice stage (.chalice/config.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "package", help="output directory (replaced)")
    parser.add_argument("--no-cache", action="store_true", help="build the layer afresh, ignoring build/cache")
    args = parser.parse_args(argv)
    try:
        info = package(args.stage, args.out, use_cache=not args.no_cache)
    except PackagingError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for name, artifact in info["artifacts"].items():
        print(f"{args.out / name}: {artifact['bytes'] / 1e6:.1f} MB "
              f"({artifact['unzipped_bytes'] / 1e6:.1f} MB unzipped), sha256 {artifact['sha256'][:16]}")
    print(f"{args.out / TEMPLATE}: stage {args.stage}")
    if info["unpinned"]:
        lines = "\n".join(f"  {name}=={version}" for name, version in info["unpinned"].items())
        print(f"warning: the layer holds versions no pin fixes; add to layers/constraints.txt:\n{lines}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
