"""The base class every catalog source plugin returns from ``register_sources``."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from typing import TYPE_CHECKING

from ..catalog.schema import Entry
from ..errors import SourceUnavailableError
from .entry_snapshot import EntrySnapshot, read_entry_snapshot

if TYPE_CHECKING:
    from ..backbones.contract import Backbone


class Source:
    """A catalog source: yields entries for one ``source:`` prefix.

    Subclasses set ``name``; ``package`` (the import needed to list entries live) and ``extra``
    (the pip extra that installs it). A source that can list without its package may override
    :meth:`available`; one that ships an entry snapshot sets ``ships_snapshot`` so that a sync
    without its package, or with the version the snapshot was listed from, reads the snapshot.
    A source listing a remote hub sets ``listed_on_request``: only a sync that names it lists it.
    """

    name: str = ""
    package: str | None = None
    extra: str | None = None
    ships_snapshot: bool = False
    # lists from a remote hub: synced only when named (the listing needs the network and is unbounded)
    listed_on_request: bool = False

    def available(self) -> bool:
        """Whether :meth:`entries` can run here (its package is importable)."""
        if self.package is None:
            return True
        try:
            return find_spec(self.package) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            return False

    def offline_snapshot(self) -> EntrySnapshot | None:
        """The entries zooprobe ships for this source (None: none); see :func:`~zooprobe.plugins.sync.sync_sources`."""
        return read_entry_snapshot(self.name) if self.ships_snapshot else None

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

    def cache_status(self, entry: Entry) -> str | None:
        """Whether the entry's weights are in the local download cache (None: this source does not say)."""
        return None

    def load(self, entry: Entry) -> Backbone:
        """Load the entry's pretrained model as an adapter of the :class:`~zooprobe.backbones.contract.Backbone`
        contract (a framework's own subclass), which assessment and fine-tuning drive without knowing the framework.

        :raises SourceUnavailableError: when this source cannot load weights (yet) or lacks its package.
        """
        raise SourceUnavailableError(
            f"source '{self.name}' lists '{entry.id}' but cannot load weights; "
            "load an entry of a source whose plugin implements load() (torchvision, timm, keras ...)"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
