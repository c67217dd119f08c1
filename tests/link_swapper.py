"""A hostile job's trick, for the tests: swap files and directories of a tenant's tree for symlinks, in a loop.

    setpriv --reuid UID --regid GID --clear-groups python3 tests/link_swapper.py PAIRS_JSON [HOLD_SECONDS]

PAIRS_JSON is a list of [path, target]: for each, a symlink to ``target`` is made beside ``path``, then the
two are exchanged atomically (renameat2 RENAME_EXCHANGE), held ``HOLD_SECONDS``, and exchanged back, pair
after pair, until SIGTERM.  ``path`` is never missing: it is either what it was or the symlink.  On SIGTERM
it finishes the round (everything back in place) and prints how many swaps it made.  Run as the tenant's
uid, as its job would be; it uses the standard library only, so the system's python3 runs it.
"""
import ctypes
import json
import os
import signal
import sys
import time

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(first: str, second: str) -> None:
    if _libc.renameat2(_AT_FDCWD, first.encode(), _AT_FDCWD, second.encode(), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), first)


def main() -> None:
    pairs = json.loads(sys.argv[1])
    hold = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    links = []
    for path, target in pairs:
        link = os.path.join(os.path.dirname(path), f".swap-{len(links)}-{os.path.basename(path)}")
        os.symlink(target, link)
        links.append((path, link))
    swaps = 0
    while not stop:
        for path, link in links:
            exchange(path, link)  # path is now the symlink
            if hold:
                time.sleep(hold)
            exchange(path, link)  # and back
            swaps += 1
            if hold:
                time.sleep(hold)
    for _, link in links:
        os.unlink(link)
    print(swaps, flush=True)


if __name__ == "__main__":
    main()
