"""The web console segflow serves at ``/console`` (server-rendered pages, inline SVG charts).

>>> from segflow.ui import build_console
"""

from segflow.ui.app import build_console

__all__ = ["build_console"]
