"""Plugin system: hookspecs, the manager factory and the built-in source plugins."""

from __future__ import annotations

from .hookspecs import hookimpl
from .manager import get_plugin_manager, get_source, get_sources
from .source import Source

__all__ = ["Source", "get_plugin_manager", "get_source", "get_sources", "hookimpl"]
