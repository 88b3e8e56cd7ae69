"""A virtual X display for the PsychoPy tests (Xvfb started on a free display number when none is set).

Use ``display`` as a session fixture (see ``tests/test_experiment_display.py``); it skips with a clear reason when
PsychoPy or Xvfb is missing. ``DISPLAY`` must be set before ``psychopy.visual`` (pyglet) is first imported, which
is why the display tests import PsychoPy only inside the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest


def _display_works(display: str) -> bool:
    """True when an X server answers on ``display`` (a socket in /tmp/.X11-unix, or xdpyinfo says so)."""
    num = display.split(":")[-1].split(".")[0]
    if display.startswith(":") and os.path.exists(f"/tmp/.X11-unix/X{num}"):
        return True
    xdpyinfo = shutil.which("xdpyinfo")
    if xdpyinfo:
        return subprocess.run([xdpyinfo, "-display", display], capture_output=True, timeout=10).returncode == 0
    return bool(display) and not display.startswith(":")  # remote display: trust it


def start_xvfb(screen: str = "1280x1024x24", timeout: float = 10.0) -> tuple[subprocess.Popen, str]:
    """Start ``Xvfb`` on a display number it picks itself (``-displayfd``); returns (process, ":N")."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no X display and Xvfb is not installed (apt-get install xvfb libgl1 libglu1-mesa)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    buf = b""
    os.set_blocking(read_fd, False)
    while time.monotonic() < deadline and not buf.endswith(b"\n"):
        if proc.poll() is not None:
            break
        try:
            chunk = os.read(read_fd, 64)
            if chunk:
                buf += chunk
                continue
        except BlockingIOError:
            pass
        time.sleep(0.02)
    os.close(read_fd)
    if not buf.strip().isdigit():
        proc.terminate()
        pytest.skip(f"Xvfb did not start (exit code {proc.poll()}); cannot test the PsychoPy window")
    return proc, f":{int(buf.strip())}"


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An X display for PsychoPy: the existing ``DISPLAY`` if it answers, else a fresh Xvfb (stopped at the end).

    Skips when PsychoPy is not installed.
    """
    pytest.importorskip("psychopy", reason="PsychoPy is not installed (pip install 'vibe-rt[psychopy]')")
    current = os.environ.get("DISPLAY")
    if current and _display_works(current):
        yield current
        return
    proc, disp = start_xvfb()
    os.environ["DISPLAY"] = disp
    try:
        yield disp
    finally:
        if current is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = current
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
