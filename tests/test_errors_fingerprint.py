"""Grouping errors into issues (agent/error_tracking/fingerprint.py): the same bug from two users at two line
offsets (and from two deploys, two hosts) is one issue; two different bugs are two; the client's own
fingerprint wins, "{{ default }}" extends the derived one."""

from __future__ import annotations

import hashlib
from typing import Any

from agent.error_tracking.config import ErrorsConfig
from agent.error_tracking.fingerprint import fingerprint, in_app_top, normalise_file, normalise_message
from agent.error_tracking.model import ChainedException, Frame
from agent.error_tracking.validate import parse_error
from agent.events.validate import Limits

NOW = 1_795_514_405.0


def error(type_: str = "TypeError", message: str = "Cannot read properties of undefined (reading 'amount')",
          frames: list[dict[str, Any]] | None = None, **fields: Any):
    body = {"type": type_, "message": message, **fields}
    if frames is not None:
        body["frames"] = frames
    return parse_error(body, now=NOW, config=ErrorsConfig(), limits=Limits())


def payment_stack(offset: int = 0, bundle: str = "3f2a9c1b", host: str = "cdn-1.loom.app") -> list[dict[str, Any]]:
    """The checkout bug's stack: React internals (not in-app) around the application's own frames."""
    base = f"https://{host}/_next/static/chunks"
    return [
        {"filename": f"{base}/framework-{bundle}.js", "function": "invokeGuardedCallback", "lineno": 1, "colno": 9021,
         "inApp": False},
        {"filename": f"{base}/pages/checkout-{bundle}.js?v={offset}", "function": "onSubmit", "lineno": 40 + offset,
         "colno": 12 + offset, "inApp": True},
        {"filename": f"{base}/pages/checkout-{bundle}.js", "function": "chargeCard", "lineno": 88 + offset,
         "colno": 5, "inApp": True},
        {"filename": f"{base}/framework-{bundle}.js", "function": "dispatch", "lineno": 2, "inApp": False}]


def test_the_same_bug_from_two_users_at_two_line_offsets_is_one_issue():
    alice = error(frames=payment_stack(0), userId="alice", message="Cannot read 'amount' of order 1234")
    bob = error(frames=payment_stack(7), userId="bob", message="Cannot read 'amount' of order 98765")
    assert fingerprint(alice) == fingerprint(bob)


def test_the_same_bug_from_another_deploy_and_host_is_one_issue():
    assert fingerprint(error(frames=payment_stack(0, "3f2a9c1b", "cdn-1.loom.app"))) == \
        fingerprint(error(frames=payment_stack(3, "a9b8c7d6e5", "cdn-2.loom.app")))


def test_two_different_bugs_are_two_issues():
    payment = error(frames=payment_stack())
    other_function = payment_stack()
    other_function[2]["function"] = "refundCard"
    other_file = payment_stack()
    other_file[2]["filename"] = other_file[2]["filename"].replace("checkout", "account")
    prints = {fingerprint(payment), fingerprint(error("RangeError", frames=payment_stack())),
              fingerprint(error(frames=other_function)), fingerprint(error(frames=other_file))}
    assert len(prints) == 4


def test_frames_outside_the_app_do_not_split_an_issue():
    stack = payment_stack()
    changed = payment_stack()
    changed[0]["function"], changed[3]["function"] = "somethingElse", "anotherThing"
    assert fingerprint(error(frames=stack)) == fingerprint(error(frames=changed))


def test_only_the_top_five_in_app_frames_count():
    deep = [{"filename": f"src/f{i}.ts", "function": f"fn{i}", "inApp": True} for i in range(8)]
    other_entry = [dict(frame) for frame in deep]
    other_entry[0]["function"] = "differentEntry"          # the outermost calls: beyond the top five
    assert fingerprint(error(frames=deep)) == fingerprint(error(frames=other_entry))
    near = [dict(frame) for frame in deep]
    near[3]["function"] = "changed"                         # one of the five nearest the raise
    assert fingerprint(error(frames=deep)) != fingerprint(error(frames=near))


def test_in_app_selection_falls_back_when_the_client_marks_none():
    unmarked = [Frame(filename="a.js", function="a"), Frame(filename="b.js", function="b", in_app=False),
                Frame(filename="c.js", function="c")]
    assert [f.function for f in in_app_top(unmarked)] == ["a", "c"]
    library = [Frame(filename="a.js", function="a", in_app=False), Frame(filename="b.js", function="b", in_app=False)]
    assert [f.function for f in in_app_top(library)] == ["a", "b"]
    mixed = [Frame(filename="a.js", function="a", in_app=True), Frame(filename="b.js", function="b")]
    assert [f.function for f in in_app_top(mixed)] == ["a"]


def test_file_names_lose_hosts_queries_hashes_ids_and_numbers():
    assert normalise_file("https://cdn-3.loom.app/_next/static/chunks/pages/pay-3f2a9c1b.js?v=12#x") == \
        "/_next/static/chunks/pages/pay-<id>.js"
    assert normalise_file("/srv/releases/20251114-2/app/payment.py") == "/srv/releases/<n>-<n>/app/payment.py"
    assert normalise_file("/tmp/550e8400-e29b-41d4-a716-446655440000/x.js") == "/tmp/<id>/x.js"
    assert normalise_file("src/facade.ts") == "src/facade.ts"           # a word of hex letters stays


def test_without_frames_the_message_is_used_with_ids_and_numbers_normalised():
    first = error("PaymentError", "Order 1234 failed for email:0123456789abcdef0123456789abcdef after 2.5 s")
    second = error("PaymentError", "Order 98 failed for email:fedcba9876543210fedcba9876543210 after 30 s")
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(error("PaymentError", "Card declined for order 1234"))
    assert normalise_message("id 550e8400-e29b-41d4-a716-446655440000 at 0x7ffe12  ptr a1b2c3d4") == \
        "id <id> at <id> ptr <id>"


def test_the_clients_fingerprint_wins_and_default_extends_the_derived_one():
    a = error(frames=payment_stack(), fingerprint=["payment-timeout"])
    b = error("OtherError", frames=[{"function": "elsewhere"}], fingerprint="payment-timeout")
    assert fingerprint(a) == fingerprint(b) != fingerprint(error(frames=payment_stack()))
    eu = error(frames=payment_stack(), fingerprint=["{{ default }}", "eu"])
    us = error(frames=payment_stack(3), fingerprint=["{{default}}", "us"])
    eu_again = error(frames=payment_stack(5), fingerprint=["{{ default }}", "eu"])
    assert fingerprint(eu) == fingerprint(eu_again) != fingerprint(us)
    assert fingerprint(eu) != fingerprint(error(frames=payment_stack()))


def test_a_fingerprint_is_32_hex_digits_and_holds_no_client_text():
    print_ = fingerprint(error(fingerprint="alice@example.com"))
    assert len(print_) == 32 and int(print_, 16) >= 0 and "alice" not in print_


# --- Sentry's grouping inputs: the source line and the chain ----------------------------------------------

def test_the_source_line_splits_two_bugs_in_one_function_and_survives_moving_lines():
    def stack(line: str, lineno: int) -> list[dict[str, Any]]:
        return [{"filename": "app/pay.py", "function": "charge", "lineno": lineno, "inApp": True, "contextLine": line}]
    amount = error(frames=stack("    total = order.amount  ", 10))
    assert fingerprint(amount) == fingerprint(error(frames=stack("total =   order.amount", 52)))   # moved, re-indented
    assert fingerprint(amount) != fingerprint(error(frames=stack("    fee = order.fee", 11)))
    minified = "x" * 121                                      # longer than Sentry reads: left out, as if absent
    assert fingerprint(error(frames=stack(minified, 1))) == fingerprint(error(frames=stack("", 1)))


def test_an_error_without_causes_or_source_lines_keeps_its_old_fingerprint():
    """Issues stored before the chain and source lines were read must not split in two."""
    legacy = error(frames=payment_stack(0))
    expected = hashlib.sha256("\x1f".join(
        ["frames", "TypeError", "/_next/static/chunks/pages/checkout-<id>.js|onSubmit",
         "/_next/static/chunks/pages/checkout-<id>.js|chargeCard"]).encode()).hexdigest()[:32]
    assert fingerprint(legacy) == expected


def test_every_exception_of_the_chain_groups():
    raised = error(type_="ValueError", frames=payment_stack(0))
    with_cause = error(type_="ValueError", frames=payment_stack(0))
    with_cause.causes = [ChainedException("ZeroDivisionError", "division by zero",
                                          frames=[Frame(filename="app/math.py", function="divide", in_app=True)])]
    other_cause = error(type_="ValueError", frames=payment_stack(0))
    other_cause.causes = [ChainedException("KeyError", "'amount'",
                                           frames=[Frame(filename="app/orders.py", function="load", in_app=True)])]
    assert len({fingerprint(raised), fingerprint(with_cause), fingerprint(other_cause)}) == 3


def test_a_chain_without_frames_groups_by_types_and_values_normalised():
    first = error(type_="Error", message="request 1234 failed")
    second = error(type_="Error", message="request 9 failed")
    for e, code in ((first, 500), (second, 503)):
        e.causes = [ChainedException("FetchError", f"status {code} from upstream")]
    assert fingerprint(first) == fingerprint(second)
    third = error(type_="Error", message="request 9 failed")
    third.causes = [ChainedException("TimeoutError", "timed out after 30 s")]
    assert fingerprint(third) != fingerprint(first)
