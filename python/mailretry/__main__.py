"""``python -m mailretry``: the same as the ``mailretry`` command."""

from __future__ import annotations

import sys

from mailretry.cli import main

sys.exit(main())
