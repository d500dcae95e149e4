"""Imported by the workers' fork server only (preloaded, :mod:`bundle.inference.processes`): the server ends
without the interpreter's teardown, which with torch and MONAI loaded kept it 2-3 s on a core after the run.

Its forked workers are unaffected (multiprocessing ends them with ``os._exit``). Never import this elsewhere: it
ends the importing process at its exit with status 0.
"""

from __future__ import annotations

import atexit
import os

atexit.register(os._exit, 0)  # registered last, so it runs first: the server has nothing else to clean up
