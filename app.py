"""Nudge's Chalice application: the app, its middleware and its blueprints.

No logic and no AWS clients here; see functions/ for the handlers and
chalicelib/ for everything they call.
"""
from chalice import Chalice

from chalicelib.http import cors_headers, in_error_shape
from chalicelib.observability import flush, logger
from chalicelib.settings import get_settings
from functions.admin import admin
from functions.arrivals import arrivals
from functions.bus import bus
from functions.definitions_api import definitions
from functions.delivery import delivery
from functions.docs import docs
from functions.feedback import feedback
from functions.preferences import preferences
from functions.schedules import schedules
from functions.tracking import tracking

app = Chalice(app_name="nudge")


@app.middleware("http")
def http_boundary(event, get_response):
    """Correlation id and CORS on every answer, and every failure in the JSON
    error shape (a retry is safe: ingestion is idempotent by messageId)."""
    request_context = event.context or {}
    logger.set_correlation_id(event.headers.get("x-request-id") or request_context.get("requestId"))
    try:
        response = get_response(event)
    finally:
        flush()
    response = in_error_shape(response)
    response.headers.update(cors_headers(event.headers.get("origin"), get_settings().cors_origins))
    return response


app.register_blueprint(tracking)
app.register_blueprint(admin)
app.register_blueprint(bus)
app.register_blueprint(arrivals)
app.register_blueprint(delivery)
app.register_blueprint(feedback)
app.register_blueprint(schedules)
app.register_blueprint(definitions)
app.register_blueprint(preferences)
app.register_blueprint(docs)
