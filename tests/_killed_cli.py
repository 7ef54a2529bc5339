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


if __name__ == "__main__":
    kill_at_rename(sys.argv[1], int(sys.argv[2]))
    from nirst_jax.cli import main

    sys.exit(main(sys.argv[3:]))
