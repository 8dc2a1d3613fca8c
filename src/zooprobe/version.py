"""The package version, in one place (the plugin listing and run records name it)."""

__version__ = "0.1.0"
