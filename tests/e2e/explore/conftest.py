"""Fixtures of the Explore browser tests, defined in ``_explore_stack`` (a name no other folder uses).

Test modules import helpers from ``_explore_stack``, never from ``conftest``: other folders have
their own ``conftest.py`` on ``sys.path`` too, and the first plain ``import conftest`` would win.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _explore_stack import browser_context, chromium_path, explore_stack, page

__all__ = ["browser_context", "chromium_path", "explore_stack", "page"]
