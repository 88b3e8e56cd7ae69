"""Shared test setup: small thread pools, LSL discovery kept on this machine, a temporary log level."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# liblsl reads its configuration when first loaded: keep stream discovery on the local link only, so tests
# never see (or disturb) streams on the lab network. Set before pylsl is imported anywhere.
_LSL_CFG = Path(tempfile.gettempdir()) / "vibe-rt-tests-lsl.cfg"
_LSL_CFG.write_text("[multicast]\nResolveScope = link\n[log]\nlevel = -2\n")
os.environ.setdefault("LSLAPICFG", str(_LSL_CFG))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def source_id() -> str:
    """A unique LSL source_id per test, so that parallel or repeated tests never resolve each other's streams."""
    import uuid

    return f"vibe-rt-test-{uuid.uuid4().hex[:12]}"
