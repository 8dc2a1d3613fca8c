"""zooprobe: pick a pretrained backbone, and how much of it to keep, for a small labelled dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .catalog.schema import Compute, Entry, InputSpec, PretrainStage, ReportedMetric
from .errors import ZooprobeError
from .plugins.hookspecs import hookimpl
from .plugins.metric import Metric
from .plugins.source import Source

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from .api import AssessRun, FinetuneRun, assess, finetune, report, run, search, show
    from .backbones.backbone import Backbone

# Heavy entry points load on first use, so that `import zooprobe` (and every CLI start) stays light.
# The notebook API (`zooprobe.api`) returns DataFrames and typed run results; pandas loads with a frame.
_LAZY = {
    **dict.fromkeys(("assess", "finetune", "search", "show", "run", "report"), ".api"),
    **dict.fromkeys(("AssessRun", "FinetuneRun"), ".api"),
    "Backbone": ".backbones.backbone",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'zooprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


from .version import __version__  # noqa: E402


def load(
    entry_id: str, home: str | None = None, *, trust_remote_code: bool = False, trust_savedmodel: bool = False
) -> Backbone:
    """Load a catalog entry's pretrained weights, the way its source intends.

    Args:
        entry_id: a catalog id, e.g. ``torchvision:mobilenet_v2.IMAGENET1K_V1``.
        home: the catalog directory (default ``$ZOOPROBE_HOME`` or ``~/.cache/zooprobe``).
        trust_remote_code: run the repository's own Python code (``hf:`` entries only), pinned to
            the commit it resolves; that commit is the returned backbone's ``entry.source_version``.
        trust_savedmodel: load a TF SavedModel from TF-Hub or Kaggle: its graph runs as code (file
            ops included), so it loads only when trusted (or its source is in ``$ZOOPROBE_TRUST_SAVEDMODEL``).

    Returns:
        a :class:`~zooprobe.backbones.backbone.Backbone` in eval mode, with its preprocessing,
        ordered ``cut_points`` and ``extract(batch, layers)``.

    Raises:
        ZooprobeError: for an unknown id, or ``trust_remote_code`` on an entry that is not ``hf:``.

    Example:
        >>> backbone = zooprobe.load("torchvision:mobilenet_v2.IMAGENET1K_V1")
        >>> feats = backbone.extract(backbone.preprocess([image]), ["features.7", "pre_logits"])
    """
    from .plugins.loading import load_by_id

    return load_by_id(entry_id, home, trust_remote_code=trust_remote_code, trust_savedmodel=trust_savedmodel)


# `zooprobe.runs` is a function, and the run store's package keeps its place in sys.modules: loading the
# package here, before the function is defined, keeps a later `import zooprobe.runs.store` from rebinding it.
from . import runs as _runs_package  # noqa: E402


def runs(*, kind: str | None = None, home: str | Path | None = None) -> pd.DataFrame:
    """The stored runs as a DataFrame, most recent first (id, kind, status, data, created, ...).

    ``kind``: ``assess`` or ``finetune`` only. Reopen one with :func:`zooprobe.run`. The run store's
    package is ``zooprobe.runs.store`` (import it by that name).
    """
    from .api import runs as stored_runs

    return stored_runs(kind=kind, home=home)


del _runs_package

__all__ = [
    "AssessRun",
    "Backbone",
    "Compute",
    "Entry",
    "FinetuneRun",
    "Metric",
    "InputSpec",
    "PretrainStage",
    "ReportedMetric",
    "Source",
    "ZooprobeError",
    "__version__",
    "assess",
    "finetune",
    "hookimpl",
    "load",
    "report",
    "run",
    "runs",
    "search",
    "show",
]
