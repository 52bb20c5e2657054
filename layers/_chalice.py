"""``chalice package`` with Nudge's dependency layer in place of Chalice's own.

    python -m layers._chalice LAYER_ZIP [chalice arguments...]

``"automatic_layer": true`` makes Chalice build a layer from requirements.txt
and vendor/ and give it to every function (the ``ManagedLayer`` resource).
Here Chalice's layer packager is handed the zip that layers/package.py built,
so Chalice wires *that* layer to every function, copies it into the output as
``layer-deployment.zip``, and downloads nothing itself. Everything else is
stock ``chalice package``. Run by layers/package.py in its own process, since
Chalice imports the app to read its routes and event sources.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from chalice.cli import main as chalice_main
from chalice.deploy.packager import LayerDeploymentPackager


def use_layer(layer_zip: str) -> None:
    """Make Chalice's layer packager answer with ``layer_zip``."""

    def create_deployment_package(self: Any, project_dir: str, python_version: str) -> str:
        self._ui.write(f"Using Nudge's dependency layer {layer_zip}\n")
        return layer_zip

    LayerDeploymentPackager.create_deployment_package = create_deployment_package  # type: ignore[method-assign]


if __name__ == "__main__":
    use_layer(os.path.abspath(sys.argv[1]))
    sys.argv = ["chalice", *sys.argv[2:]]
    sys.exit(chalice_main())
