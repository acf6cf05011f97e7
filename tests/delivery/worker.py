"""A delivery worker process for the multi-process tests: `pump` (the outbox consumer and
the dispatcher) in a loop, as django-q2 workers run it when the outbox wakes them, until the
test terminates or kills it. Prints "ready" once Django is set up."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType


def main() -> None:
    import django

    django.setup()
    from delivery.tasks import pump

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while not stopping:
        if not pump("test-worker")["messages"]:
            time.sleep(0.05)
    sys.exit(0)


if __name__ == "__main__":
    main()
