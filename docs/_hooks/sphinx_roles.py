"""MkDocs hook: Sphinx cross-reference roles in docstrings read as plain code.

dspex's docstrings write ``:class:`Down``` and ``:meth:`start_task``` as Sphinx does; mkdocstrings
renders the role's name before the code (":meth:start_task"). This hook drops the role name, so
the API reference shows the code alone.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:py:)?(?:attr|class|const|data|exc|func|meth|mod|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    """Remove the role names that stand right before inline code."""
    return ROLE.sub("", html)
