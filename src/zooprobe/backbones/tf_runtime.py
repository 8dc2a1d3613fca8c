"""Importing TensorFlow safely and reading a restored SavedModel's traced functions."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import Any


def import_tensorflow() -> Any:
    """``import tensorflow``, loading triton first when it is installed.

    triton's native libraries crash the process (segfault) when they load after TensorFlow's, and
    TensorFlow 2.21 imports Keras, which on the torch backend imports torch._dynamo and so triton.
    """
    if "tensorflow" not in sys.modules and find_spec("triton") is not None:
        import triton  # noqa: F401

    import tensorflow as tf

    return tf


def concrete_functions(model: Any) -> list[Any]:
    """The traced functions behind a restored SavedModel's ``__call__`` (none for Keras or TF1 modules)."""
    call = model.__call__ if callable(model) else None
    return list(getattr(call, "concrete_functions", None) or [])
