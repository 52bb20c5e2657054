"""Nudge's AWS resources (template.yaml) and the code that reads and creates them."""
