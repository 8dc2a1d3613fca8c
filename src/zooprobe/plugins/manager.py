"""The plugin manager factory: built-in plugins, then third-party ones from entry points."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

import pluggy

from ..catalog.schema import Entry
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from . import hookspecs
from .source import Source

if TYPE_CHECKING:
    from ..backbones.backbone import Backbone
    from .metric import Metric

# Built-in plugins are registered exactly as third-party ones are: by module, under a name.
DEFAULT_PLUGINS: dict[str, str] = {
    "metrics": "zooprobe.evaluator.builtin_metrics",
    "torchvision": "zooprobe.sources.torchvision_source",
    "timm": "zooprobe.sources.timm_source",
    "keras": "zooprobe.sources.keras_source",
    "tfhub": "zooprobe.sources.tfhub_source",
    "kaggle": "zooprobe.sources.kaggle_source",
    "hf": "zooprobe.sources.hf_source",
    "local": "zooprobe.sources.local_source",
}

ALLOW_ENV = "ZOOPROBE_PLUGINS"

# Installed plugins that failed to load, by entry-point name: why (one line). Filled by
# get_plugin_manager; each is reported on stderr once per process.
PLUGIN_FAILURES: dict[str, str] = {}
_reported: set[str] = set()


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager with the hookspecs, the built-in plugins and installed plugins.

    ``$ZOOPROBE_PLUGINS`` (comma-separated names), when set, is an allow-list: only the plugins
    it names are registered, built-in or third-party; an empty value registers none.

    An installed plugin that cannot be imported or implements a hook that does not exist (a typo) is
    left out, with the reason on stderr and in :data:`PLUGIN_FAILURES`: one broken package must not
    take the built-in sources and metrics down with it.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    allowed_env = os.environ.get(ALLOW_ENV)
    allowed = None if allowed_env is None else {n.strip() for n in allowed_env.split(",") if n.strip()}
    for name, module in DEFAULT_PLUGINS.items():
        if allowed is None or name in allowed:
            pm.register(importlib.import_module(module), name=name)
    pm.check_pending()
    if load_entrypoints:
        _load_installed_plugins(pm, allowed)
    return pm


def _load_installed_plugins(pm: pluggy.PluginManager, allowed: set[str] | None) -> None:
    """Register the ``zooprobe`` entry points one at a time, leaving out (and reporting) those that fail."""
    import sys
    from importlib.metadata import entry_points

    PLUGIN_FAILURES.clear()
    for ep in entry_points(group=hookspecs.PROJECT):
        if allowed is not None and ep.name not in allowed:
            pm.set_blocked(ep.name)
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT, name=ep.name)
            pm.check_pending()  # a hook no spec declares: a misspelt name
        except Exception as exc:  # noqa: BLE001 - a third party's import errors are its own, of any type
            plugin = pm.get_plugin(ep.name)
            if plugin is not None:
                pm.unregister(plugin)
            PLUGIN_FAILURES[ep.name] = f"{type(exc).__name__}: {first_line(exc)}"
            if ep.name not in _reported:
                _reported.add(ep.name)
                print(
                    f"zooprobe: plugin '{ep.name}' ({ep.value}) left out: {PLUGIN_FAILURES[ep.name]};"
                    f" fix or uninstall it, or leave it out with {ALLOW_ENV}",
                    file=sys.stderr,
                )


def get_sources(pm: pluggy.PluginManager | None = None) -> dict[str, Source]:
    """Every registered source by name.

    :raises ZooprobeError: when two plugins register a source of the same name.
    """
    pm = pm or get_plugin_manager()
    return unique_by_name(pm.hook.register_sources(), "source")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


def unique_by_name(batches: Iterable[Iterable[T]], kind: str) -> dict[str, T]:
    """Flatten what every plugin's hook returned into ``{item.name: item}``.

    :raises ZooprobeError: when two plugins contribute a ``kind`` of the same name.
    """
    found: dict[str, T] = {}
    for batch in batches:
        for item in batch:
            name = item.name
            if name in found:
                raise ZooprobeError(
                    f"two plugins register the {kind} '{name}'; uninstall one or block it with {ALLOW_ENV}"
                )
            found[name] = item
    return found


def get_source(name: str, pm: pluggy.PluginManager | None = None) -> Source:
    sources = get_sources(pm)
    if name not in sources:
        raise InvalidChoiceError("source", name, sorted(sources))
    return sources[name]


class RemoteCodeError(ZooprobeError):
    """``trust_remote_code`` asked of an entry whose source cannot run (and pin) a repository's code."""


def check_remote_code(entry: Entry, pm: pluggy.PluginManager | None = None) -> Source:
    """The source of ``entry``, checked to take ``trust_remote_code`` (a keyword its ``load`` names).

    A source whose ``load`` only swallows ``**kwargs`` does not count: it would ignore the flag.

    :raises RemoteCodeError: naming the entry, when its source's ``load`` has no such keyword.
    """
    source = get_source(entry.source, pm)
    if "trust_remote_code" not in inspect.signature(source.load).parameters:
        raise RemoteCodeError(
            f"--trust-remote-code applies to Hugging Face Hub (hf:) entries only, not '{entry.id}' "
            f"(source '{entry.source}' runs no repository code); drop the flag or pick an hf: entry"
        )
    return source


def load_entry(
    entry: Entry,
    *,
    trust_remote_code: bool = False,
    trust_savedmodel: bool = False,
    pm: pluggy.PluginManager | None = None,
) -> Backbone:
    """Load ``entry`` through its source plugin, passing ``trust_remote_code`` only when it is set.

    With ``trust_remote_code`` the Hugging Face source runs the repository's Python code, pinned to the
    40-hex commit it resolves, and records that commit in the backbone's ``entry.source_version``.
    ``trust_savedmodel`` lets a TF SavedModel of any source load (its graph runs as code; see
    :mod:`zooprobe.backbones.savedmodel_trust`).

    :raises RemoteCodeError: when ``trust_remote_code`` is set and the source cannot honour it.
    :raises SavedModelTrustError: for a SavedModel from a source not trusted.
    """
    from ..backbones.savedmodel_trust import trusting_savedmodels

    with trusting_savedmodels(trust_savedmodel):
        if not trust_remote_code:
            return get_source(entry.source, pm).load(entry)
        source = check_remote_code(entry, pm)
        return source.load(entry, trust_remote_code=True)  # type: ignore[call-arg]  # checked by check_remote_code


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, object]]:
    """Name, version (of the distribution, for third-party plugins), hooks and metrics of each plugin.

    ``metrics`` lists what the plugin's ``register_metrics`` returns, each as ``{name, input,
    description, reference}`` (empty for a plugin without that hook).
    """
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    metric_hooks = {impl.plugin_name: impl.function for impl in pm.hook.register_metrics.get_hookimpls()}
    out: list[dict[str, object]] = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        version = dist.version if dist is not None else _own_version()
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        metrics = cast("Iterable[Metric]", metric_hooks[name]()) if name in metric_hooks else ()
        out.append(
            {
                "name": name,
                "version": version,
                "module": module,
                "builtin": dist is None and name in DEFAULT_PLUGINS,
                "hooks": hooks,
                "metrics": _describe_metrics(metrics),
            }
        )
    return out


def _describe_metrics(metrics: Iterable[Metric]) -> list[dict[str, str]]:
    return [
        {"name": m.name, "input": m.input, "description": m.description, "reference": m.reference}
        for m in sorted(metrics, key=lambda m: m.name)
    ]


def _own_version() -> str:
    from ..version import __version__

    return __version__
