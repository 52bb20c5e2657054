"""The trigger and template examples in README.md are valid definitions."""
import re
from pathlib import Path

import yaml

from chalicelib.patterns import compile_pattern
from chalicelib.templates import parse_template
from chalicelib.triggers import parse_trigger

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", README, flags=re.S)]


def test_every_yaml_example_is_a_valid_trigger_template_or_condition():
    checked = 0
    for block in BLOCKS:
        if isinstance(block, dict) and ("then" in block or "steps" in block):
            parse_trigger(block, templates=None, origin="README")
        elif isinstance(block, dict) and "channel" in block:
            parse_template(block, origin="README")
        elif isinstance(block, list):
            for pattern in block:
                compile_pattern(pattern)
        else:
            raise AssertionError(f"an example that is neither a definition nor conditions: {block!r}")
        checked += 1
    assert checked >= 4
