"""Nudge's deployable package: the dependency layer, the functions' zip and the
merged template (package.py), and their deployment with CloudFormation (deploy.py)."""
