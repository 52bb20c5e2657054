"""Thin handlers, one module per event source, registered by app.py as Chalice blueprints."""
