"""Fission function (Python environment) that starts a checkout on pmesh.

It creates a promise that an outside system settles - the payment
provider - and hands the provider the promise's callback URL and settle
token; it chains the rest of the checkout onto that promise (ship, then
receipt, both served by worker.py); and it answers at once with the ids.
When the provider later POSTs {"value": "..."} to the callback URL (with
Authorization: Bearer <token>), the agent resolves the payment promise and
the chain runs by itself: no function waits meanwhile.

    fission function create --name checkout --env pmesh-python --code checkout.py
    fission route create --function checkout --url /checkout --method POST

The environment (environment.yaml) mounts the node's agent socket and sets
PMESH_SOCKET and PMESH_HTTP_URL (the agent gateway's http_public_url).
"""

import json

import pmesh

_client = None


def client():
    """One connection per function pod, opened on first use and reused."""
    global _client
    if _client is None:
        _client = pmesh.Client()
    return _client


def start_checkout(c, order, http_url=None, pay_within="1h"):
    """Creates the payment promise and its continuations; returns what the
    caller and the payment provider need."""
    pay = c.create(timeout=pay_within, labels={"flow": "checkout"}, token=True)
    if pay.token is None:
        raise RuntimeError("the pmesh agent has no token_secret_file: outside systems "
                           "cannot settle promises")
    shipped = c.then(pay.id, "ship", timeout="2h")
    receipt = c.then(shipped, "receipt", timeout="2h")
    return {
        "order": order,
        "payment_promise": pay.id,
        # For the payment provider: POST {"value": ...} here with the token.
        "callback_url": pmesh.callback_url(http_url, pay.id),
        "settle_token": pay.token,
        "receipt_promise": receipt,
    }


def receipt(c, receipt_promise, timeout="25s"):
    """The receipt once the chain is done (a later request may ask for it)."""
    try:
        return {"state": "done", "receipt": json.loads(c.wait(receipt_promise, timeout))}
    except pmesh.WaitTimeout:
        return {"state": "pending"}
    except pmesh.Rejected as e:
        return {"state": e.state, "reason": e.reason}


def handle(body):
    """The function's work for one HTTP body (bytes): a new checkout."""
    order = json.loads(body or b"{}")
    return start_checkout(client(), order)


def main():
    """Fission's entry point: the Python environment calls main() inside a
    Flask request."""
    from flask import request  # provided by Fission's Python environment
    try:
        out = handle(request.get_data())
    except pmesh.Unreachable as e:
        return json.dumps({"error": str(e)}), 503, {"Content-Type": "application/json"}
    return json.dumps(out), 200, {"Content-Type": "application/json"}
