"""Run a benchmark script against another copy of the ``mailretry`` package.

    python benchmarks/python/run_with_package.py PKGDIR SCRIPT [ARGS...]

``PKGDIR`` holds a ``mailretry/`` folder (e.g. ``git archive OLD python/mailretry``
plus a built ``_core*.so`` copied into it). The editable install's import hook is
removed first, so ``import mailretry`` finds PKGDIR's copy: the same script can
then time the package before and after a change, alternately, in one session.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    pkg, script = sys.argv[1], sys.argv[2]
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if "editable" not in (type(f).__module__ + type(f).__name__).lower()
    ]
    sys.path.insert(0, pkg)
    sys.argv = [script, *sys.argv[3:]]
    import mailretry.aio

    print("mailretry from", mailretry.aio.__file__, flush=True)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
