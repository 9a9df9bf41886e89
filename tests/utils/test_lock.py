import subprocess
import sys
import time

from lora_diffusion.utils.lock import try_lock

HOLD = """
import sys, time
from lora_diffusion.utils.lock import try_lock
with try_lock(sys.argv[1]) as mine:
    print("held" if mine else "busy", flush=True)
    time.sleep(60)
"""


def _holder(path):
    """A second process that takes the lock and sleeps; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_elsewhere_is_refused_and_freed_when_its_holder_dies(tmp_path):
    path = tmp_path / "cell.lock"
    proc = _holder(path)
    try:
        with try_lock(path) as mine:
            assert mine is False
        assert path.is_file()  # the refused process leaves the holder's file alone
    finally:
        proc.kill()  # no clean exit: the kernel drops the lock anyway
        proc.wait()
    with try_lock(path) as mine:
        assert mine is True
        assert path.read_text().strip().isdigit()
    assert not path.exists()  # removed on release


def test_a_lock_is_taken_again_after_release(tmp_path):
    path = tmp_path / "sub" / "x.lock"
    for _ in range(2):
        with try_lock(path) as mine:
            assert mine
    start = time.perf_counter()
    with try_lock(path) as mine:
        assert mine and time.perf_counter() - start < 1  # never waits
