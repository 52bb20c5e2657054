"""Nudge: a trigger-marketing engine deployed as small Lambda handlers with Chalice."""
