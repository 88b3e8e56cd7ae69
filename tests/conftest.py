"""Shared test setup: small thread pools, LSL discovery kept on this machine, a temporary log level."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# liblsl reads its configuration when first loaded: keep stream discovery on this machine (never the network
# interface), set before pylsl or mne_lsl is imported anywhere.
from vibe_rt.lsl_config import confine_lsl_to_machine  # noqa: E402  (a leaf module: imports neither)

confine_lsl_to_machine(Path(tempfile.gettempdir()) / "vibe-rt-tests-lsl.cfg")
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
