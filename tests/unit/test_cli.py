"""The nudge command: validate files, apply them through the admin API, list triggers."""
import io
from pathlib import Path

from chalicelib import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*argv, transport=None):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), transport=transport, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def write(directory, name, text):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


SHIPPED_TEMPLATES = len(list((ROOT / "templates").glob("*.yaml")))
SHIPPED_TRIGGERS = len(list((ROOT / "triggers").glob("*.yaml")))


def test_the_shipped_examples_are_valid():
    status, out, _ = run("validate", str(ROOT))
    assert status == 0
    assert out == f"valid: {SHIPPED_TEMPLATES} template(s), {SHIPPED_TRIGGERS} trigger(s) in {ROOT}\n"


def test_a_broken_directory_prints_file_field_and_reason_and_fails(tmp_path):
    write(tmp_path, "templates/welcome.yaml", "id: welcome\nchannel: email\nsubject: Hi {{ name\ntext: hi\n")
    write(tmp_path, "triggers/welcome.yaml", "id: welcome\ncategory: marketing\nwhen: {event: Signed Up}\n"
                                             "then:\n  - sms: {template: welcome}\n")
    write(tmp_path, "triggers/typo.yaml", "id: [oops\n")
    write(tmp_path, "triggers/other.yaml", "id: welcome\ncategory: marketing\nwhen: {type: page}\n"
                                           "then:\n  - emit: {event: Priced}\n")
    status, out, err = run("validate", str(tmp_path))
    assert status == 1
    assert out.splitlines() == [
        f"{tmp_path}/triggers/typo.yaml: (yaml): is not valid YAML: did not find expected ',' or ']' "
        "(line 2, column 1)",
        f"{tmp_path}/templates/welcome.yaml: subject: is not valid Liquid: expected '}}}}', found end of file "
        "(line 1, column 4)",
        f"{tmp_path}/triggers/welcome.yaml: then[0].sms.template: is an email template, but sms needs an sms "
        "template",
        f"{tmp_path}/triggers/other.yaml: id: must equal the file name ('other')",
        f"{tmp_path}/triggers/welcome.yaml: id: is also the id of the trigger in {tmp_path}/triggers/other.yaml",
    ]
    assert "5 problem(s)" in err


def test_a_directory_of_either_kind_is_sorted_by_content(tmp_path):
    write(tmp_path, "thanks.yaml", "id: thanks\nchannel: sms\ntext: Thanks!\n")
    write(tmp_path, "order.yml", "id: order\ncategory: transactional\nwhen: {event: Order Completed}\n"
                                 "then:\n  - sms: {template: thanks}\n")
    status, out, _ = run("validate", str(tmp_path))
    assert (status, out) == (0, f"valid: 1 template(s), 1 trigger(s) in {tmp_path}\n")


def test_triggers_alone_are_checked_except_their_template_references(tmp_path):
    status, out, err = run("validate", str(ROOT / "triggers"))
    assert status == 0 and f"valid: 0 template(s), {SHIPPED_TRIGGERS} trigger(s)" in out
    assert "templates triggers name were not checked" in err


def test_a_missing_directory_is_a_usage_error(tmp_path):
    status, _, err = run("validate", str(tmp_path / "nope"))
    assert status == 2 and "no such file or directory" in err


class FakeNudge:
    """The admin API's answers, recorded."""

    def __init__(self, templates=(), refuse=None):
        self.calls = []
        self.templates = list(templates)
        self.refuse = refuse

    def __call__(self, method, path, body=None):
        self.calls.append((method, path))
        if method == "GET" and path == "/v1/templates":
            return 200, {"templates": self.templates}
        if method == "GET" and path == "/v1/triggers":
            return 200, {"triggers": [
                {"id": "order-confirmation", "category": "transactional", "event": "Order Completed",
                 "enabled": True, "version": 3},
                {"id": "pricing-page-alert", "category": "internal", "event": "page", "enabled": False,
                 "version": 1}]}
        if path == self.refuse:
            return 400, {"error": {"problems": [{"field": "then[0].email.from", "rule": "is not verified"}]}}
        return (201, {"id": path.rsplit("/", 1)[1], "version": 1, "outcome": "created"})


def test_apply_puts_templates_then_triggers_and_reports_each(tmp_path):
    nudge = FakeNudge()
    status, out, _ = run("apply", str(ROOT), transport=nudge)
    assert status == 0
    puts = [path for method, path in nudge.calls if method == "PUT"]
    assert puts[:SHIPPED_TEMPLATES] == [f"/v1/templates/{p.stem}" for p in sorted((ROOT / "templates").glob("*.yaml"))]
    assert puts[SHIPPED_TEMPLATES:] == [f"/v1/triggers/{p.stem}" for p in sorted((ROOT / "triggers").glob("*.yaml"))]
    first = sorted((ROOT / "templates").glob("*.yaml"))[0].stem
    assert out.splitlines()[0] == f"template {first}: created (version 1)"


def test_apply_checks_everything_before_changing_anything(tmp_path):
    write(tmp_path, "triggers/hello.yaml", "id: hello\ncategory: marketing\nwhen: {event: Signed Up}\n"
                                           "then:\n  - email: {template: welcome, from: not-an-address}\n")
    nudge = FakeNudge(templates=[{"id": "welcome", "channel": "email"}])
    status, out, _ = run("apply", str(tmp_path), transport=nudge)
    assert status == 1
    assert "hello.yaml: then[0].email.from: must be an email address" in out
    assert [method for method, _ in nudge.calls] == ["GET"]


def test_apply_stops_at_the_first_refusal_naming_the_file(tmp_path):
    nudge = FakeNudge(refuse="/v1/triggers/order-confirmation")
    status, out, _ = run("apply", str(ROOT), transport=nudge)
    assert status == 1
    assert out.splitlines()[-1] == f"{ROOT}/triggers/order-confirmation.yaml: then[0].email.from: is not verified"


def test_apply_says_when_the_token_is_refused_or_nudge_is_down(tmp_path):
    status, out, _ = run("apply", str(ROOT), transport=lambda method, path, body=None: (401, None))
    assert status == 1 and "the admin token was refused" in out
    status, out, _ = run("apply", str(ROOT), "--url", "http://127.0.0.1:9")
    assert status == 1 and out.startswith("cannot reach Nudge for GET /v1/templates")


def test_list_prints_a_table_of_triggers():
    status, out, _ = run("list", transport=FakeNudge())
    assert status == 0
    assert out.splitlines() == [
        "ID                  CATEGORY       EVENT            ENABLED  VERSION",
        "order-confirmation  transactional  Order Completed  yes      3",
        "pricing-page-alert  internal       page             no       1",
    ]


def test_validate_refuses_triggers_that_break_the_compliance_rules(tmp_path):
    write(tmp_path, "templates/promo.yaml", "id: promo\nchannel: email\nsubject: Sale\ntext: Sale today\n")
    write(tmp_path, "triggers/no-topic.yaml", "id: no-topic\ncategory: marketing\nwhen: {event: Viewed}\n"
                                              "then:\n  - email: {template: promo, from: shop@example.com}\n")
    write(tmp_path, "triggers/night-sms.yaml", "id: night-sms\ncategory: marketing\ntopic: offers\n"
                                               "quiet_hours: false\nwhen: {event: Viewed}\n"
                                               "then:\n  - sms: {text: Sale today}\n")
    write(tmp_path, "triggers/uncapped.yaml", "id: uncapped\ncategory: marketing\ntopic: offers\nbudget: false\n"
                                              "when: {event: Viewed}\n"
                                              "then:\n  - email: {template: promo, from: shop@example.com}\n")
    status, out, _ = run("validate", str(tmp_path))
    assert status == 1
    assert sorted(out.splitlines()) == sorted([
        f"{tmp_path}/triggers/no-topic.yaml: topic: is required: a marketing email needs the subscription topic "
        "people can leave (e.g. topic: offers), so every message can be unsubscribed from",
        f"{tmp_path}/triggers/night-sms.yaml: quiet_hours: cannot be switched off for a marketing SMS: texts that "
        "sell must respect the recipient's night (carriers and the law require it)",
        f"{tmp_path}/triggers/uncapped.yaml: budget: can be bypassed by transactional triggers only; a marketing "
        "trigger's messages count against the person's fatigue budget",
    ])
