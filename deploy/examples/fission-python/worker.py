"""The worker of the checkout example: serves `ship` and `receipt`, the
continuations checkout.py chains onto the payment promise. It runs beside
the functions (worker.yaml: a Deployment on every node's agent), keeps
`concurrency` invocations in flight, and rides out agent restarts by
reconnecting by itself.

    python3 worker.py          # PMESH_SOCKET says where the agent is
"""

import json
import logging

import pmesh


def build_worker(socket=None, concurrency=8):
    w = pmesh.Worker(socket, concurrency=concurrency)

    @w.function("ship")
    def ship(payment):
        paid = json.loads(payment)
        if not paid.get("amount"):
            raise ValueError("payment without an amount")  # rejects the chain
        inv = pmesh.invocation()
        return json.dumps({"paid": paid["amount"], "tracking": "TRK-" + inv.target_id[-8:]})

    @w.function("receipt")
    def receipt(shipment):
        s = json.loads(shipment)
        return json.dumps({"receipt": "paid %s, shipped as %s" % (s["paid"], s["tracking"]),
                           "tracking": s["tracking"]})

    return w


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    build_worker().run()
