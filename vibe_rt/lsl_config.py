"""Keep LSL on this machine: an ``lsl_api.cfg`` with machine-wide discovery, for tests, benchmarks and local runs.

liblsl reads its configuration from the file named by ``LSLAPICFG`` when it is first loaded. With
``ResolveScope = machine`` its discovery queries stay on this host (multicast with TTL 0), and
``KnownPeers = {127.0.0.1}`` adds a unicast query to loopback, which MNE-LSL's bundled liblsl needs to see more
than the last outlet. Never use ``link`` or wider scopes on a shared network: they broadcast on the interface.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The configuration written by :func:`confine_lsl_to_machine` (log level -2: liblsl errors only).
MACHINE_ONLY_CFG = "[multicast]\nResolveScope = machine\n[lab]\nKnownPeers = {127.0.0.1}\n[log]\nlevel = -2\n"


def confine_lsl_to_machine(path: str | os.PathLike | None = None) -> Path:
    """Write the machine-only configuration and point ``LSLAPICFG`` at it (an existing ``LSLAPICFG`` is kept).

    Call it before ``pylsl`` or ``mne_lsl`` is imported: liblsl reads the file once, when it loads.

    Parameters
    ----------
    path : path-like | None
        Where to write the file; default ``<tmp>/vibe-rt-lsl-machine-<uid>.cfg``.

    Returns
    -------
    Path
        The file ``LSLAPICFG`` names now.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    cfg = Path(path) if path is not None else Path(tempfile.gettempdir()) / f"vibe-rt-lsl-machine-{uid}.cfg"
    if not cfg.is_file() or cfg.read_text() != MACHINE_ONLY_CFG:
        cfg.write_text(MACHINE_ONLY_CFG)
    os.environ.setdefault("LSLAPICFG", str(cfg))
    return Path(os.environ["LSLAPICFG"])
