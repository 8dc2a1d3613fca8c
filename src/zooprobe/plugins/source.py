"""The base class every catalog source plugin returns from ``register_sources``."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from typing import TYPE_CHECKING

from ..errors import SourceUnavailableError
from ..registry.schema import Entry

if TYPE_CHECKING:
    from ..evaluator.backbone import Backbone


class Source:
    """A catalog source: yields entries for one ``source:`` prefix.

    Subclasses set ``name``; ``package`` (the import needed to list entries live) and ``extra``
    (the pip extra that installs it). A source that can list without its package may override
    :meth:`available`.
    """

    name: str = ""
    package: str | None = None
    extra: str | None = None

    def available(self) -> bool:
        """Whether :meth:`entries` can run here (its package is importable)."""
        return self.package is None or find_spec(self.package) is not None

    def require(self) -> None:
        """:raises SourceUnavailableError: naming the pip extra when the package is missing."""
        if not self.available():
            raise SourceUnavailableError(
                f"source '{self.name}' needs the '{self.package}' package; "
                f"install it with: pip install 'zooprobe[{self.extra or self.package}]'"
            )

    def package_version(self) -> str | None:
        """Version of the package the entries come from; a sync is skipped when it is unchanged."""
        return None

    def entries(self) -> Iterator[Entry]:
        """Yield every entry of this source."""
        raise NotImplementedError

    def load(self, entry: Entry) -> Backbone:
        """Load the entry's pretrained model as a :class:`~zooprobe.evaluator.backbone.Backbone`.

        :raises SourceUnavailableError: when this source cannot load weights (yet) or lacks its package.
        """
        raise SourceUnavailableError(
            f"source '{self.name}' lists '{entry.id}' but cannot load weights; "
            "load a torchvision or timm entry, or a source whose plugin implements load()"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
