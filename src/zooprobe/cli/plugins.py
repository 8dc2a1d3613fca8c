"""``zooprobe plugins``."""

from __future__ import annotations

import json

import click

from ..plugins.manager import PLUGIN_FAILURES, describe_plugins, get_plugin_manager
from ._common import format_option, output_format


@click.command(name="plugins")
@format_option("text, or json: a list of {name, version, module, builtin, hooks, metrics}.")
def plugins_list(fmt: str, as_json: bool) -> None:
    """List the plugins zooprobe loaded (built-in and from the 'zooprobe' entry-point group),
    and the transferability metrics they register (names for 'zooprobe assess --metrics').

    Set ZOOPROBE_PLUGINS=name,name to load only the plugins named.
    """
    plugins = describe_plugins(get_plugin_manager())
    if output_format(fmt, as_json) == "json":
        click.echo(json.dumps(plugins, indent=2))
        return
    metrics: list[tuple[str, dict[str, str]]] = []
    for p in plugins:
        kind = "built-in" if p["builtin"] else "installed"
        click.echo(f"{p['name']:<14} {p['version']:<10} {kind:<9} hooks: {', '.join(p['hooks'])}")  # type: ignore[arg-type]
        metrics += [(str(p["name"]), m) for m in p["metrics"]]  # type: ignore[attr-defined]
    for name, reason in PLUGIN_FAILURES.items():
        click.echo(f"{name:<14} {'-':<10} {'left out':<9} {reason}")
    if not metrics:
        click.echo("\nno metrics registered (zooprobe assess needs at least one)")
        return
    click.echo("\nmetrics (zooprobe assess --metrics NAME,NAME):")
    width = max(len(m["name"]) for _, m in metrics)
    for plugin, m in sorted(metrics, key=lambda item: item[1]["name"]):
        click.echo(f"  {m['name']:<{width}}  {m['input']:<13}  {m['description']} [{plugin}]")
