"""Package metadata: one version for the wheel, the extension and the C++ library."""

from importlib.metadata import version

import mailretry
from mailretry import _core


def test_version_is_the_same_everywhere() -> None:
    # The wheel's version comes from CMakeLists.txt, as does the C++ library's.
    assert mailretry.__version__ == version("mailretry")
    assert _core.__version__ == version("mailretry")
