"""Run `nirst ARGS…` and SIGKILL the process at a chosen file rename: a crash in the middle of a write.

Usage: python tests/_killed_cli.py FRAGMENT OCCURRENCE ARGS…

Every completed file or folder write of nirst-jax and orbax ends in a rename (atomic writes).
The process kills itself, with SIGKILL (no handler, no cleanup, like the OOM killer or a lost
node), just before the OCCURRENCE-th rename whose destination contains FRAGMENT: the temporary
file or folder is then complete or partial on disk but not in place. Exits 0 without a kill
when that rename never comes (the test then fails on the exit status it expected).
"""

import os
import signal
import subprocess
import sys


def kill_at_rename(fragment: str, occurrence: int) -> None:
    seen = 0

    def wrap(original):
        def renamed(source, destination, *args, **kwargs):
            nonlocal seen
            if fragment in os.fspath(destination):
                seen += 1
                if seen == occurrence:
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(source, destination, *args, **kwargs)

        return renamed

    os.rename = wrap(os.rename)
    os.replace = wrap(os.replace)


def run_killed(fragment: str, occurrence: int, *args: str, env=None) -> subprocess.CompletedProcess:
    """Run this script on `nirst ARGS` in a subprocess (`env`: its environment, default ours)."""
    return subprocess.run([sys.executable, __file__, fragment, str(occurrence), *args],
                          capture_output=True, text=True, timeout=600, env=env)


if __name__ == "__main__":
    kill_at_rename(sys.argv[1], int(sys.argv[2]))
    from nirst_jax.cli import main

    sys.exit(main(sys.argv[3:]))
