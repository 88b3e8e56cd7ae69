"""Garbage-collection pauses kept out of the stream.

CPython's cyclic collector stops every thread while it walks the objects it tracks. In a streaming process (torch,
ONNX Runtime, MNE, SciPy and open_clip imported, a model loaded) a full collection walks about 430,000 objects and
took 160 ms on the 2-core benchmark machine, a gen-1 pass several ms: one such pause in the inference thread makes
its response late, one in the outlet thread delays a push. :func:`gc.freeze` (Python >= 3.7) moves every object
alive at the start into a permanent generation that the collector no longer walks; what the stream allocates
afterwards is still collected, and quickly, since it is young and small. The objects frozen are the long-lived ones
of start-up (modules, the model, the montage), so nothing that would have been freed is kept.

Measured over 10 minutes at every frame (30 fps, embedded model, ONNX Runtime, the same machine): before freezing,
the slowest response waited 28 ms inside the synthesizer step (normally under 1 ms), which made it late.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0


def freeze_startup_objects() -> None:
    """Collect once, then freeze what is alive (the first of nested callers; see the module docstring)."""
    global _holders
    with _lock:
        if _holders == 0:
            gc.collect()
            gc.freeze()
        _holders += 1


def thaw() -> None:
    """Undo :func:`freeze_startup_objects` once its last caller is done (the frozen objects become collectable)."""
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            gc.unfreeze()


__all__ = ["freeze_startup_objects", "thaw"]
