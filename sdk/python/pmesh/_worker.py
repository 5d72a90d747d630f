"""The blocking Worker: pmesh.aio.Worker run on its own event loop."""

import asyncio
import signal
import threading

from . import aio


class Worker(aio.Worker):
    """Serves functions to the agent (see pmesh.aio.Worker): plain functions
    run on `concurrency` threads, so N invocations of a blocking function are
    in flight at once; async functions run on the worker's loop.

        w = pmesh.Worker(concurrency=8)

        @w.function("resize")
        def resize(data: bytes) -> bytes: ...

        w.run()   # until SIGINT/SIGTERM or w.stop()
    """

    def run(self):
        """Serves until stop() (from another thread) or SIGINT / SIGTERM
        (when run in the main thread)."""
        async def main():
            if threading.current_thread() is threading.main_thread():
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    try:
                        loop.add_signal_handler(sig, self.stop)
                    except (NotImplementedError, RuntimeError):
                        pass
            await aio.Worker.run(self)
        asyncio.run(main())
