"""``zooprobe plugins``."""

from __future__ import annotations

import json

import click

from ..plugins.manager import describe_plugins, get_plugin_manager


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {name, version, module, builtin, hooks}.")
def plugins_list(as_json: bool) -> None:
    """List the plugins zooprobe loaded (built-in and from the 'zooprobe' entry-point group).

    Set ZOOPROBE_PLUGINS=name,name to load only the plugins named.
    """
    plugins = describe_plugins(get_plugin_manager())
    if as_json:
        click.echo(json.dumps(plugins, indent=2))
        return
    for p in plugins:
        kind = "built-in" if p["builtin"] else "installed"
        click.echo(f"{p['name']:<14} {p['version']:<10} {kind:<9} hooks: {', '.join(p['hooks'])}")  # type: ignore[arg-type]
