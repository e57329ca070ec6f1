"""cProfile for a bot run by `bench/load.py --profile`, limited to the measured phase.

Python imports `sitecustomize` at start-up from the first folder on its path that has
one; load.py puts this folder on the bot's PYTHONPATH together with
BENCH_CPROFILE_OUT. Then SIGUSR1 starts the profiler on the main thread (the event loop,
where the SQLite store also runs) and SIGUSR2 stops it and writes the stats, so start-up
imports and the idle tail stay out of the profile. Without BENCH_CPROFILE_OUT this file
does nothing.
"""

from __future__ import annotations

import cProfile
import os
import signal

_OUT = os.environ.get("BENCH_CPROFILE_OUT")

if _OUT:
    _profiler = cProfile.Profile()

    def _start(_signum: int, _frame: object) -> None:
        _profiler.enable()

    def _stop(_signum: int, _frame: object) -> None:
        _profiler.disable()
        _profiler.dump_stats(_OUT)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
