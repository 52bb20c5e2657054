"""`make run`: the whole engine on this machine, on the embedded AWS emulator.

One process, started with ``python -m infra.local_stack``:

1. moto server on 127.0.0.1:$AWS_PORT (default 4566), in this process;
2. the resources of infra/template.yaml created in it through its
   CloudFormation API (stack ``nudge-local``), and the functions' environment
   read back off the stack, so local and cloud come from the same file;
3. the AWS SDK pointed at the emulator (AWS_ENDPOINT_URL, dummy credentials,
   us-east-1) and the ``local`` stage environment of .chalice/config.json,
   read with Chalice's own config loader;
4. a write key ($NUDGE_WRITE_KEY) and an admin token ($NUDGE_ADMIN_TOKEN) seeded;
5. the local event-source runtime (infra/event_sources.py) delivering bus
   events, schedules, queue messages, stream records and notifications to
   their handlers;
6. the HTTP API on 127.0.0.1:$PORT (default 8000), served in this process by
   Chalice's local server (threaded, no autoreload);
7. the example triggers and templates (triggers/, templates/) applied through
   the admin API as ``nudge apply`` does (skipped with NUDGE_LOCAL_EXAMPLES=0);
8. fault injection, when asked for (infra/faults.py): NUDGE_FAULT_RATE,
   NUDGE_FAULT_SEED, NUDGE_FAULT_DIE_AFTER_SEND and NUDGE_DUPLICATE_DELIVERY
   make the handlers' AWS calls fail, delivery processes die after a send, and
   deliveries come two or three times out of order. Set up from the start,
   active once the stack is ready (the examples are applied without faults).

Ctrl-C or SIGTERM stops all of it and exits 0. Nothing is kept between runs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PROJECT_DIR = Path(__file__).resolve().parent.parent
STAGE = "local"
STACK_NAME = "nudge-local"
HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_WRITE_KEY = "nudge-local-write-key"
DEFAULT_ADMIN_TOKEN = "nudge-local-admin-token"
#: Local stand-ins for secrets a deployment passes as NoEcho parameters.
LOCAL_UNSUBSCRIBE_KEYS = "local:nudge-local-unsubscribe-signing-key"
LOCAL_HASH_SALT = "nudge-local-hash-salt"

log = logging.getLogger("local_stack")


@dataclass(frozen=True)
class Options:
    port: int = 8000
    aws_port: int = 4566
    write_key: str = DEFAULT_WRITE_KEY
    admin_token: str = DEFAULT_ADMIN_TOKEN
    stack_name: str = STACK_NAME
    verbose: bool = False
    examples: bool = True
    #: Domains whose addresses may send email from the emulator's SES.
    sender_domains: tuple[str, ...] = ("example.com",)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Options:
        return cls(
            port=int(env.get("PORT") or 8000),
            aws_port=int(env.get("AWS_PORT") or 4566),
            write_key=env.get("NUDGE_WRITE_KEY") or DEFAULT_WRITE_KEY,
            admin_token=env.get("NUDGE_ADMIN_TOKEN") or DEFAULT_ADMIN_TOKEN,
            verbose=(env.get("NUDGE_LOCAL_VERBOSE") or "") not in ("", "0", "false"),
            examples=(env.get("NUDGE_LOCAL_EXAMPLES") or "1") not in ("0", "false"),
            sender_domains=tuple(d.strip() for d in (env.get("NUDGE_LOCAL_SENDER_DOMAINS") or "example.com").split(",")
                                 if d.strip()),
        )


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """What makes botocore and PynamoDB talk to the emulator, and only to it."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def point_sdk_at(endpoint_url: str, environ: Any = os.environ) -> None:
    """Set the AWS environment; drop what could send a call elsewhere (a named
    profile, a per-service endpoint)."""
    for name in list(environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"):
            del environ[name]
    environ.update(aws_environment(endpoint_url))


def ensure_port_free(port: int) -> None:
    """Fail before starting anything when a port is taken (OSError names it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise OSError(exc.errno, f"{HOST}:{port} is already in use ({exc.strerror})") from exc


def stand_in_parameters(public_url: str) -> dict[str, str]:
    """The template parameters of a stack that sends no real mail (the local
    stack's defaults, the benchmarks): its URL and fixed stand-ins for the secrets."""
    return {"PublicUrl": public_url, "UnsubscribeSigningKeys": LOCAL_UNSUBSCRIBE_KEYS,
            "UnsubscribeMailto": "unsubscribe@example.com", "HashSalt": LOCAL_HASH_SALT}


#: Template parameters the environment may set for a local stack, by the variable that sets them.
_PARAMETER_VARIABLES = {"UnsubscribeSigningKeys": "NUDGE_UNSUBSCRIBE_KEYS", "UnsubscribeMailto": "NUDGE_UNSUBSCRIBE_MAILTO",
                        "HashSalt": "NUDGE_HASH_SALT", "FatigueBudget": "NUDGE_FATIGUE_BUDGET"}


def local_parameters(public_url: str) -> dict[str, str]:
    """The template parameters of a local stack: its own URL, and stand-ins
    for the secrets (the environment may set real ones, and the budget)."""
    return {**stand_in_parameters(public_url),
            **{name: os.environ[variable] for name, variable in _PARAMETER_VARIABLES.items() if os.environ.get(variable)}}


def verify_senders(domains: tuple[str, ...], configuration_set: str) -> None:
    """What an operator does once in SES: verify the sending domains, and make
    the configuration set (the emulator's CloudFormation cannot)."""
    from chalicelib.aws_clients import client

    for domain in domains:
        client("ses").verify_domain_identity(Domain=domain)
    if configuration_set:
        try:
            client("sesv2").create_configuration_set(ConfigurationSetName=configuration_set)
        except client("sesv2").exceptions.AlreadyExistsException:
            pass


class LocalStack:
    """The running local stack. ``start`` brings it up step by step; ``stop``
    takes down whatever was started, in reverse order, and may be called at
    any point (also half-way through ``start``)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.environment: dict[str, str] = {}
        self.ready_seconds = 0.0
        self.examples = "not applied"
        self.runtime: Any = None
        self.faults: Any = None
        self.ses_events: Any = None
        self.emulator: Any = None
        self.http: Any = None
        self._http_thread: threading.Thread | None = None
        self._teardown = contextlib.ExitStack()

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.options.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.options.aws_port}"

    def start(self) -> None:
        began = time.monotonic()
        ensure_port_free(self.options.aws_port)
        ensure_port_free(self.options.port)
        self._start_emulator()
        point_sdk_at(self.endpoint_url)
        self._create_stack()
        config, app = self._load_app()
        self._seed_keys()
        self._prepare_faults()
        self._start_event_sources(app, config)
        self._start_ses_events()
        self._serve_http(app, config)
        if self.options.examples:
            self._apply_examples()
        if self.faults is not None:
            self._teardown.enter_context(self.faults)
            log.warning("fault injection is on: %s", self.faults.plan.describe())
        self.ready_seconds = time.monotonic() - began

    def _prepare_faults(self) -> None:
        """The injector the environment asks for (NUDGE_FAULT_*, NUDGE_DUPLICATE_DELIVERY), if any."""
        from infra.faults import FaultInjector, FaultPlan

        plan = FaultPlan.from_env(os.environ)
        self.faults = FaultInjector(plan) if plan.enabled else None

    def _start_emulator(self) -> None:
        from infra.emulator import Emulator

        self.emulator = Emulator(HOST, self.options.aws_port, verbose=self.options.verbose)
        self.emulator.start()
        self._teardown.callback(self.emulator.stop)

    def _create_stack(self) -> None:
        """Create the template's resources and take the functions' environment."""
        import warnings

        import boto3

        from infra import template

        # moto logs each resource type it cannot create; its UserWarning repeats it.
        warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
        cloudformation = boto3.client("cloudformation")
        template.create_stack(cloudformation, self.options.stack_name, local_parameters(self.api_url))
        self.environment = template.stack_environment(cloudformation, self.options.stack_name)
        os.environ.update(self.environment)

    def _load_app(self) -> tuple[Any, Any]:
        """The app as ``chalice local`` loads it: the stage's config applies
        its environment to this process, then app.py is imported."""
        from chalice.cli.factory import CLIFactory
        from chalice.deploy.validate import validate_routes

        factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)
        config = factory.create_config_obj(chalice_stage_name=STAGE)
        app = config.chalice_app  # applies config.environment_variables to os.environ
        validate_routes(app.routes)
        self.environment.update(config.environment_variables)
        return config, app

    def _seed_keys(self) -> None:
        from chalicelib import auth
        from chalicelib.dynamodb import DynamoKeyStore
        from chalicelib.settings import get_settings

        keys = DynamoKeyStore(get_settings())
        keys.add(self.options.write_key, auth.WRITE, "local write key")
        keys.add(self.options.admin_token, auth.ADMIN, "local admin token")
        verify_senders(self.options.sender_domains, get_settings().ses_configuration_set)

    def _start_event_sources(self, app: Any, config: Any) -> None:
        import boto3
        from chalice.local import LambdaContext

        from chalicelib.settings import get_settings
        from infra.bindings import StackBindings
        from infra.event_sources import EventSourceRuntime
        from infra.template import load_template

        session = boto3.session.Session()
        bindings = StackBindings(load_template(), session.client("cloudformation"), self.options.stack_name,
                                 session.client)

        def context_for(name: str) -> LambdaContext:
            scoped = config.scope(STAGE, name)
            return LambdaContext(function_name=f"{config.app_name}-{STAGE}-{name}",
                                 memory_size=scoped.lambda_memory_size or 128,
                                 max_runtime_ms=(scoped.lambda_timeout or 60) * 1000)

        from infra.faults import Redelivery, armed_invocations

        faults = self.faults
        self.runtime = EventSourceRuntime(app, session.client, bus_name=get_settings().event_bus,
                                          prefix=self.options.stack_name, context_factory=context_for,
                                          bindings=bindings,
                                          redelivery=Redelivery.from_plan(faults.plan) if faults else None,
                                          invoking=armed_invocations(faults) if faults else None)
        self._teardown.callback(self.runtime.stop)
        self.runtime.start()

    def _start_ses_events(self) -> None:
        """SES's event publishing to the feedback topic, which the emulator lacks (infra/ses_events.py)."""
        import boto3

        from chalicelib.settings import get_settings
        from infra.ses_events import SesEventPublisher
        from infra.template import physical_ids

        topic_arn = physical_ids(boto3.client("cloudformation"), self.options.stack_name)["FeedbackTopic"]
        self.ses_events = SesEventPublisher(boto3.client("sns"), topic_arn, get_settings().ses_configuration_set)
        self._teardown.callback(self.ses_events.stop)
        self.ses_events.start()

    def _serve_http(self, app: Any, config: Any) -> None:
        from chalice.cli.factory import CLIFactory

        from infra.faults import arm_http_server

        server = CLIFactory(str(PROJECT_DIR), environ=os.environ).create_local_server(
            app, config, HOST, self.options.port)
        server.server.RequestHandlerClass = gateway_errors_in_json_shape(app, config)
        if self.faults is not None:
            arm_http_server(server.server, self.faults)
        self.http = server

        def close() -> None:
            server.shutdown()
            server.server.server_close()

        self._http_thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.1},
                                             name="http-api", daemon=True)
        self._http_thread.start()
        self._teardown.callback(close)

    def _apply_examples(self) -> None:
        """The shipped example definitions, through the admin API. A refusal
        is reported, not fatal: the rest of the stack is still useful."""
        import io

        if not (PROJECT_DIR / "triggers").is_dir() and not (PROJECT_DIR / "templates").is_dir():
            return
        try:
            from chalicelib import cli
        except ImportError:
            return
        out, err = io.StringIO(), io.StringIO()
        status = cli.apply(PROJECT_DIR, cli.http_transport(self.api_url, self.options.admin_token), out, err)
        lines = [line for line in (out.getvalue() + err.getvalue()).splitlines() if line.strip()]
        if status == 0:
            self.examples = f"{len(lines)} example definitions applied from triggers/ and templates/"
        else:
            self.examples = "example definitions NOT applied (see the log)"
            log.warning("applying the example triggers and templates failed:\n%s", "\n".join(lines))

    def is_running(self) -> bool:
        """The API and the emulator are up (a failing event source is logged
        and left alone, as a failing function would be)."""
        return bool(self._http_thread and self._http_thread.is_alive()
                    and self.emulator is not None and self.emulator.is_running())

    def stop(self) -> None:
        self._teardown.close()

    def banner(self) -> str:
        o = self.options
        sources = "\n".join(f"    {line}" for line in self.runtime.describe()) or "    (none)"
        if self.ses_events is not None:
            sources += f"\n    {self.ses_events.describe()}"
        track = ('{"userId":"ada","event":"Signed Up","properties":{"plan":"pro"}}')
        detail = '{\\"userId\\":\\"ada\\",\\"event\\":\\"Opened App\\"}'
        return f"""
Nudge local stack is ready ({self.ready_seconds:.1f} s)

  HTTP API       {self.api_url}
  AWS emulator   {self.endpoint_url}   (moto; CloudFormation stack {o.stack_name})
  Write key      {o.write_key}
  Admin token    {o.admin_token}
  Definitions    {self.examples}

  Event sources:
{sources}

  Try:
    curl -u {o.write_key}: -H 'Content-Type: application/json' \\
         -d '{track}' {self.api_url}/v1/track
    curl -H 'Authorization: Bearer {o.admin_token}' {self.api_url}/v1/profiles/ada
    curl -H 'Authorization: Bearer {o.admin_token}' {self.api_url}/v1/profiles/ada/events
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --region {REGION} --endpoint-url {self.endpoint_url} \\
         events put-events --entries '[{{"EventBusName":"{self.environment.get("NUDGE_EVENT_BUS", "nudge")}",\\
         "Source":"cli","DetailType":"track","Detail":"{detail}"}}]'

  Ctrl-C stops everything.
"""


def gateway_errors_in_json_shape(app: Any, config: Any) -> Any:
    """Chalice's local request handler, answering what API Gateway itself
    refuses as the deployed API does (infra/template.yaml, RestAPI): a path no
    route matches is a 404 in Nudge's JSON error shape, not Chalice local's 403
    "Missing Authentication Token"."""
    import functools
    import json

    from chalice.local import ChaliceRequestHandler, ForbiddenError

    class JsonErrorRequestHandler(ChaliceRequestHandler):
        # Methods the base server would refuse with an HTML 501: the app answers
        # them (405 in the JSON shape), as it does PATCH on a route without it.
        do_TRACE = do_CONNECT = ChaliceRequestHandler._generic_handle

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """What the HTTP server itself refuses (a request line it cannot
            read, a method it does not know), in the JSON shape, not its HTML."""
            if code == 501:
                code, body = 405, {"error": {"code": "method_not_allowed",
                                             "message": f"Unsupported method: {self.command}"}}
            else:
                body = {"error": {"code": "bad_request", "message": message or "the request could not be read"}}
            data = json.dumps(body).encode()
            self.log_error("code %d, message %s", code, message)
            self.send_response(code)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _parse_payload(self) -> tuple[dict[str, Any], bytes | None]:
            """The body, also when it comes in chunks (Transfer-Encoding:
            chunked), which Chalice's own handler leaves unread on the socket."""
            if "chunked" not in (self.headers.get("transfer-encoding") or "").lower():
                return super()._parse_payload()
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailer fields, up to the blank line
                pass
            headers = {name: value for name, value in self.headers.items() if name.lower() != "transfer-encoding"}
            body = b"".join(chunks)
            return {**headers, "Content-Length": str(len(body))}, body or None

        def _send_error_response(self, error: Any) -> None:
            if isinstance(error, ForbiddenError):
                rule = "must be a route of the API (GET /openapi.json lists them)"
                status, body = 404, {"error": {"code": "not_found", "problems": [{"field": "path", "rule": rule}],
                                               "message": f"no route matches {self.command} on this path"}}
            else:
                status, body = error.CODE, {"error": {"code": "refused", "message": "the request was refused"}}
            self._send_http_response(status, {"Content-Type": "application/json"}, json.dumps(body))

    return functools.partial(JsonErrorRequestHandler, app_object=app, config=config)


class _Shutdown(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("botocore", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))

    def on_signal(signum: int, frame: Any) -> None:
        raise _Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = LocalStack(Options.from_env(os.environ))
    status = 0
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while stack.is_running():
            time.sleep(0.5)
        log.error("a part of the local stack stopped unexpectedly; shutting down")
        status = 1
    except _Shutdown as stop:
        log.info("%s received; stopping", stop)
    except OSError as exc:
        log.error("cannot start the local stack: %s", exc)
        status = 1
    except Exception:
        log.exception("the local stack failed")
        status = 1
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    log.info("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
