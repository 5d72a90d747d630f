"""deploy/examples/fission-python against a real agent (no cluster): the
function's code creates the payment promise with a settle token, the
outside system resolves it through the agent's HTTP gateway with the
callback URL, and the example's worker runs the chained continuations."""

import json
import os
import sys
import urllib.request

import pytest

import pmesh

from conftest import REPO, free_port

EXAMPLE = os.path.join(REPO, "deploy", "examples", "fission-python")
sys.path.insert(0, EXAMPLE)
import checkout  # noqa: E402
import worker  # noqa: E402


@pytest.fixture
def gateway_agent(tmp_path, start_agent):
    secret = tmp_path / "token"
    secret.write_bytes(os.urandom(32).hex().encode())
    port = free_port()
    a = start_agent("gw", "--token-secret-file", str(secret), "--http", "127.0.0.1:%d" % port)
    a.http = "http://127.0.0.1:%d" % port
    return a


def post(url, body, token):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"{}")


def test_checkout_paid_by_outside_system(gateway_agent, run_worker, monkeypatch):
    a = gateway_agent
    run_worker(worker.build_worker(a.sock, concurrency=4))
    monkeypatch.setenv("PMESH_SOCKET", a.sock)
    monkeypatch.setenv("PMESH_HTTP_URL", a.http)
    monkeypatch.setattr(checkout, "_client", None)
    out = checkout.handle(b'{"sku": "A1", "qty": 2}')  # what main() does per request
    assert out["order"] == {"sku": "A1", "qty": 2}
    assert out["callback_url"] == "%s/v1/promises/%s/resolve" % (a.http, out["payment_promise"])
    c = pmesh.Client(a.sock)
    assert checkout.receipt(c, out["receipt_promise"], timeout=0.1) == {"state": "pending"}
    # Without the token the gateway refuses to settle.
    with pytest.raises(urllib.error.HTTPError) as e:
        post(out["callback_url"], {"value": "x"}, "wrong-token")
    assert e.value.code in (401, 403)
    # The payment provider calls back.
    status, _ = post(out["callback_url"], {"value": json.dumps({"amount": 12})},
                     out["settle_token"])
    assert status == 200
    got = checkout.receipt(c, out["receipt_promise"], timeout=10)
    assert got["state"] == "done", got
    assert got["receipt"]["receipt"].startswith("paid 12, shipped as TRK-")
    c.close()


def test_checkout_failed_payment_rejects_the_chain(gateway_agent, run_worker):
    a = gateway_agent
    run_worker(worker.build_worker(a.sock, concurrency=2))
    c = pmesh.Client(a.sock)
    out = checkout.start_checkout(c, {"sku": "B"}, http_url=a.http)
    post(out["callback_url"], {"value": json.dumps({"amount": 0})}, out["settle_token"])
    got = checkout.receipt(c, out["receipt_promise"], timeout=10)
    assert got["state"] == "rejected" and "payment without an amount" in got["reason"]
    c.close()


def test_checkout_needs_a_token_secret(agent):
    with pytest.raises(RuntimeError, match="token_secret_file"):
        checkout.start_checkout(pmesh.Client(agent.sock), {}, http_url="http://x")
