"""SIGTERM (docker stop, a cancelled service job) stops dstrain as Ctrl-C does, but only dstrain itself: the
forked workers of its pools, which Pool.terminate() stops with SIGTERM, must die at once as multiprocessing
expects.  Raising KeyboardInterrupt in them could leave a shared lock held and hang the next stage."""
import signal
import subprocess
import sys

PROBE = """
import multiprocessing, os, signal, time
from dstrain.pipeline import cli
cli._stop_on_sigterm()
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
worker.start()
time.sleep(0.5)
worker.terminate()
worker.join(10)
print(worker.exitcode)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_sigterm_interrupts_dstrain_and_kills_its_forked_workers():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == [str(-signal.SIGTERM), "interrupted"], proc.stderr
    assert "Traceback" not in proc.stderr
