"""The ``zooprobe`` command line. Each command group lives in its own module."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import ZooprobeError
from ..version import __version__
from ._common import UserError


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from ..runs.store import unfinished_here

        # the runs this command leaves unfinished, not those of an earlier command in the same process
        earlier = {run_id for _, run_id, _ in unfinished_here()}
        try:
            return super().invoke(ctx)
        except ZooprobeError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            _say_how_to_resume(earlier)
            raise
        except OSError as exc:
            # an unwritable --out or --home, a full disk: one line naming the path; the traceback
            # only with ZOOPROBE_DEBUG=1
            if os.environ.get("ZOOPROBE_DEBUG") or exc.strerror is None:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise UserError(f"{exc.strerror}{where}; check the path and its permissions") from None


def _say_how_to_resume(earlier: set[str]) -> None:
    """On Ctrl-C, the command that continues each run left unfinished (click then prints 'Aborted!')."""
    import shlex

    from ..catalog.store import default_home
    from ..runs.store import unfinished_here

    for kind, run_id, home in unfinished_here():
        if run_id in earlier:
            continue
        where = "" if home == default_home() else f" --home {shlex.quote(str(home))}"
        click.echo(
            f"\ninterrupted: run {run_id} is kept; continue it with: zooprobe {kind} --resume {run_id}{where}", err=True
        )


@click.group(cls=_Root)
@click.version_option(__version__, prog_name="zooprobe")
def cli() -> None:
    """Find the pretrained backbone to start from for a small labelled dataset.

    \b
    Examples:
      zooprobe quickstart
      zooprobe search resnet --min-top1 80 --max-params 30M --sort=-top1
      zooprobe show timm:resnet50.a1_in1k
      zooprobe assess --data ./photos --query "mobilenet --max-params 10M" --top 5
      zooprobe finetune --data ./photos --model ID --strategy recommended --baseline scratch
      zooprobe report --latest --format html
      zooprobe catalog stats
      zooprobe runs check
      zooprobe plugins --format json
    """


def _register_commands() -> None:
    from .assess import assess
    from .catalog import catalog
    from .finetune import finetune_cmd
    from .plugins import plugins_list
    from .quickstart import quickstart
    from .report import report_cmd
    from .runs import runs
    from .search import search, show

    cli.add_command(assess)
    cli.add_command(catalog)
    cli.add_command(finetune_cmd)
    cli.add_command(search)
    cli.add_command(show)
    cli.add_command(plugins_list)
    cli.add_command(quickstart)
    cli.add_command(report_cmd)
    cli.add_command(runs)


_register_commands()


def main() -> None:
    cli()
