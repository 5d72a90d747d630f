"""pmesh: the Python client and worker library of pmesh, the distributed
promise mesh. Pure Python over pyzmq and protobuf; it talks to the agent on
this node over its socket ($PMESH_SOCKET, default /run/pmesh/agent.sock).

    import pmesh
    c = pmesh.Client()
    p = c.create(timeout="1m")
    q = c.then(p, "resize")
    c.resolve(p, b"...")
    print(c.wait(q))

pmesh.aio has the same API for asyncio (pipelined on one connection) and
the async Worker. Errors are exceptions under pmesh.PmeshError."""

from ._common import (Created, Promise, PromiseList, Outcome, Failure, callback_url,
                      parse_duration, decode_values, decode_outcomes, decode_failures,
                      DEFAULT_SOCKET)
from ._sync import Client
from ._worker import Worker
from .aio import Invocation, invocation
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = ["Client", "Worker", "Promise", "PromiseList", "Created", "Invocation", "invocation",
           "Outcome", "Failure", "decode_values", "decode_outcomes", "decode_failures",
           "callback_url", "parse_duration", "DEFAULT_SOCKET"] + _errors_all
