"""Options that ``--resume`` takes from the run instead of the command line."""

from __future__ import annotations

from collections.abc import Sequence

import click

from ._common import UserError


def refuse_options_with_resume(ctx: click.Context, fixed_by_run: Sequence[str]) -> None:
    """Fail when an option the resumed run fixes was typed on the command line (it would be ignored).

    :raises UserError: naming the options to drop.
    """
    typed = [
        name
        for name in fixed_by_run
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if typed:
        flags = ", ".join("--" + name.replace("_", "-") for name in typed)
        raise UserError(
            f"--resume continues the run with the options it started with; drop {flags}"
            " (or start a new run without --resume)"
        )
