"""The gate in front of TF SavedModels from sources other than the user's own paths.

A SavedModel is not weights: it is a TensorFlow graph, and a graph may hold any op TensorFlow has,
file ops (``tf.io.write_file``, ``tf.io.read_file``, ``tf.io.gfile``) included, which run when the
model is restored or called. TensorFlow has no mode that loads a SavedModel without its ops, so
zooprobe treats one downloaded from TF-Hub or Kaggle like ``trust_remote_code``: it loads only when
the caller says so, with ``trust_savedmodel=True`` (``--trust-savedmodel``), or when the source is on
the allow-list in ``$ZOOPROBE_TRUST_SAVEDMODEL`` (source names separated by commas, e.g.
``tfhub,kaggle``; ``all`` for every source). A SavedModel folder the user names by its own path is
the user's code and loads without either.

The decision is made once, where a SavedModel is restored (``sources.tfhub_source.load_handle``);
:func:`trusting_savedmodels` carries the caller's answer there through the source's ``load``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import ZooprobeError

TRUST_ENV = "ZOOPROBE_TRUST_SAVEDMODEL"
FLAG = "--trust-savedmodel"
# the source of models the user names by their own path (``--model ./folder``): the user's own code
LOCAL_SOURCE = "local"

_trusted: ContextVar[bool] = ContextVar("zooprobe_trust_savedmodel", default=False)


class SavedModelTrustError(ZooprobeError):
    """A SavedModel from a source the caller did not trust: its graph would run as code."""


@contextmanager
def trusting_savedmodels(trusted: bool) -> Iterator[None]:
    """Within the block, SavedModels of every source load when ``trusted`` (the caller's ``trust_savedmodel``)."""
    token = _trusted.set(trusted)
    try:
        yield
    finally:
        _trusted.reset(token)


def allowed_sources() -> frozenset[str]:
    """The sources named in ``$ZOOPROBE_TRUST_SAVEDMODEL`` (``all``: every one)."""
    value = os.environ.get(TRUST_ENV, "")
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def check_savedmodel_trust(source: str, what: str) -> None:
    """Allow loading the SavedModel ``what`` from ``source``, saying so on stderr, or refuse it.

    :raises SavedModelTrustError: neither ``trust_savedmodel`` nor the allow-list trusts ``source``.
    """
    allowed = allowed_sources()
    if _trusted.get():
        why = f"{FLAG}"
    elif source in allowed or "all" in allowed:
        why = f"{TRUST_ENV}={os.environ.get(TRUST_ENV, '')}"
    else:
        raise SavedModelTrustError(
            f"'{what}' is a TensorFlow SavedModel from {source}: its graph runs as code when loaded (it can read"
            f" and write files) and TensorFlow has no safe mode; load it only if you trust it, with {FLAG}"
            f" (trust_savedmodel=True in Python, or {TRUST_ENV}={source})"
        )
    print(f"zooprobe: loading the SavedModel '{what}' from {source} as trusted code ({why})", file=sys.stderr)
