"""Hook specifications: the contract between zooprobe and its plugins (built-in and third-party).

A plugin is a module or object with functions marked ``@zooprobe.hookimpl``; third-party packages
expose it in the ``zooprobe`` entry-point group::

    [project.entry-points.zooprobe]
    my_source = "my_package.zooprobe_plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .metric import Metric
    from .source import Source

PROJECT = "zooprobe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------------
# Catalog sources
# -------------------------------------------------------------------------------------------------


@hookspec
def register_sources() -> list[Source]:
    """Return the catalog sources this plugin provides.

    Every source has a unique ``name`` (the part of an id before ``:``), yields
    :class:`~zooprobe.catalog.schema.Entry` records from ``entries()``, and reports the version of
    the package its entries come from so that syncs are incremental.

    :returns: a list of :class:`~zooprobe.plugins.source.Source` objects (may be empty).
    """
    raise NotImplementedError


# -------------------------------------------------------------------------------------------------
# Transferability metrics
# -------------------------------------------------------------------------------------------------


@hookspec
def register_metrics() -> list[Metric]:
    """Return the transferability metrics this plugin provides.

    A metric scores frozen features of a labelled target dataset: ``metric.function(features,
    labels, **options) -> float | MetricResult`` where ``features`` is an N x D array (for metrics
    whose ``input`` is ``"probabilities"``, the source head's N x K class probabilities) and
    ``labels`` holds N integers. Higher must always mean more transferable. A
    :class:`~zooprobe.plugins.metric.MetricResult` adds a spread and details to the value. The
    function gets, as keywords, only the run options its ``options`` name (``seed``, ``folds``,
    ``cache``); its ``role``, ``weight`` and ``default`` say what the decision and the consensus
    ranking make of it, as they do for the built-in probe, kNN, LogME, H-score, NCE and LEEP.
    Names are unique across plugins.

    :returns: a list of :class:`~zooprobe.plugins.metric.Metric` objects (may be empty).
    """
    raise NotImplementedError
