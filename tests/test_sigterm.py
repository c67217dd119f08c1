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


# A SIGTERM sent the instant fork() returns: what Pool.terminate() does to a pool made a moment before.
JUST_FORKED = """
import os, signal, time
from dstrain.pipeline import cli
cli._stop_on_sigterm()
codes = {}
for _ in range(50):
    pid = os.fork()
    if pid == 0:
        time.sleep(1)
        os._exit(0)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    codes[code] = codes.get(code, 0) + 1
print(codes)
"""


def test_a_sigterm_right_after_fork_still_kills_the_child():
    """Before the child resets its handler, the parent's would swallow the signal: such a pool worker then
    waited forever on the lock terminate() holds, and a service job hung in the lm stage under load."""
    proc = subprocess.run([sys.executable, "-c", JUST_FORKED], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == str({-signal.SIGTERM: 50}), (proc.stdout, proc.stderr)
