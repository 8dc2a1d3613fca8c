"""The Backbone contract: what assessment and fine-tuning ask of a loaded pretrained model.

A source plugin's ``load`` returns a :class:`Backbone`; assessment and fine-tuning call only what is
declared here, so a framework is added by writing one adapter (a subclass), never by editing them.
The built-in adapters: :class:`~zooprobe.backbones.backbone.TorchBackbone` (torchvision, timm, any
``torch.nn.Module``), ``KerasBackbone`` (Keras 3), ``TFBackbone`` (TensorFlow SavedModels: TF-Hub,
Kaggle) and ``HFEncoderBackbone`` (transformers, sentence-transformers).

What an adapter provides:

- **identity and input**: ``entry`` (its catalog entry: preprocessing facts in ``entry.input``),
  :attr:`~Backbone.resolution`, :meth:`~Backbone.preprocess` (raw examples to one batch tensor);
- **features**: ``cut_points`` (ordered from input to output, ending with ``pre_logits`` where the model
  has a classifier) and :meth:`~Backbone.extract` (pooled float32 CPU features, one vector per example);
- **the source head**: :attr:`~Backbone.has_source_head`, :meth:`~Backbone.source_probabilities`,
  :meth:`~Backbone.source_class_names`, :meth:`~Backbone.source_logits`;
- **fine-tuning**: :meth:`~Backbone.check_trainable`, :meth:`~Backbone.head_layer`,
  :meth:`~Backbone.build_arm` (pretrained body up to a cut point under a new head) and
  :meth:`~Backbone.build_scratch_arm` (the same architecture re-initialised), each an :class:`Arm`.

The training loop is torch: an arm's ``model`` is a ``torch.nn.Module`` taking the batches
``preprocess`` returns, whatever computes it underneath (Keras on the torch backend, TensorFlow
through an autograd function). This module imports no framework at import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..catalog.schema import Entry
from ..errors import InvalidChoiceError, ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

PRE_LOGITS = "pre_logits"

HeadFactory = Callable[[int], "torch.nn.Module"]
"""Builds the new head of an arm from the width of the pooled features it reads."""


def linear_head(num_classes: int) -> HeadFactory:
    """The factory of a new linear head of ``num_classes`` outputs: a scratch arm's head unless told otherwise."""

    def make_head(width: int) -> torch.nn.Module:
        import torch

        return torch.nn.Linear(width, num_classes)

    return make_head


@dataclass
class Arm:
    """One trainable arm: preprocessed batches in, logits out, and what of it trains.

    ``model`` contains ``head`` (the new layers). ``frozen_parameters`` holds the ids of parameters that
    never train whatever is unfrozen (a framework's statistics kept as parameters, e.g. Keras's
    BatchNorm moving averages on the torch backend); ``statistics_frozen`` is told, each time the arm
    enters training mode, whether pretrained normalisation statistics must stay as they are, for a body
    whose layers do not follow ``torch.nn.Module.train()`` alone.
    """

    model: torch.nn.Module
    head: torch.nn.Module
    frozen_parameters: Collection[int] = field(default_factory=frozenset)
    statistics_frozen: Callable[[bool], None] | None = None

    def set_trainable(self, train_body: bool) -> None:
        """Only the head's parameters train (``train_body`` False), or every parameter but the frozen ones."""
        head_params = {id(p) for p in self.head.parameters()}
        for param in self.model.parameters():
            trains = id(param) not in self.frozen_parameters and (train_body or id(param) in head_params)
            param.requires_grad_(trains)

    def train_mode(self, keep_statistics: bool = False) -> None:
        """:func:`train_mode` on the model, then ``statistics_frozen(keep_statistics)`` where the body asks."""
        train_mode(self.model, keep_statistics)
        if self.statistics_frozen is not None:
            self.statistics_frozen(keep_statistics)

    def state(self) -> dict[str, torch.Tensor]:
        """Everything that defines the arm's function (weights and statistics), for a checkpoint."""
        return dict(self.model.state_dict())

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state` returned."""
        self.model.load_state_dict(state)


def train_mode(model: torch.nn.Module, keep_statistics: bool = False) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are frozen (or every BatchNorm layer
    with ``keep_statistics``): they stay in inference mode, so their running statistics are not updated."""
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if keep_statistics or (params and not any(p.requires_grad for p in params)):
                module.eval()


class Backbone(ABC):
    """A loaded pretrained model, as assessment and fine-tuning see it (see the module docstring).

    Subclasses set ``entry`` (the catalog entry, with the preprocessing facts the source knows; callers
    may replace it, e.g. to change the resolution) and ``cut_points``, and implement :meth:`preprocess`
    and :meth:`extract`. Everything else has a default: no source head, nothing to move between devices,
    and no fine-tuning until :meth:`build_arm` and :meth:`build_scratch_arm` are implemented.
    """

    entry: Entry
    cut_points: list[str]
    # where extract() runs, set by to(); plain class attributes, so dataclass adapters need no defaults
    device = "cpu"
    channels_last = False
    # how preprocess() resizes images, part of the feature-cache key; None: the adapter's own preprocessing
    # (a tokenizer, an image processor) decides, and images are decoded at full size
    resize_rule: ClassVar[str | None] = None

    # --- input ---

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) of the model's input: the entry's default resolution, else 224 x 224."""
        return self.entry.input.default_resolution or (224, 224)

    @abstractmethod
    def preprocess(self, examples: Sequence[Any]) -> torch.Tensor:
        """Raw examples (uint8 H x W x C images, or texts) -> one batch :meth:`extract` and arms take."""

    def expect_pairs(self, pairs: bool) -> None:  # noqa: B027  (a hook: most adapters need nothing)
        """Told, before arms are built, whether the examples are (text_a, text_b) pairs; by default ignored."""

    def count_truncated(self, examples: Sequence[Any]) -> int:
        """How many of the raw ``examples`` :meth:`preprocess` cuts to fit the model (texts over its
        token limit); by default none."""
        return 0

    def to(self, device: str, channels_last: bool = False) -> None:
        """Run the model on ``device`` (``cpu``, ``cuda``, ...); by default nothing moves."""
        self.device, self.channels_last = device, channels_last

    # --- features ---

    def check_cut_points(self, layers: Sequence[str]) -> None:
        """:raises InvalidChoiceError: listing the valid cut points when a name is unknown."""
        for layer in layers:
            if layer not in self.cut_points:
                raise InvalidChoiceError(f"cut point of {self.entry.id}", layer, self.cut_points)

    @abstractmethod
    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled float32 CPU features of ``batch`` (from :meth:`preprocess`), N x D, at each of ``layers``."""

    @property
    def pooling(self) -> str:
        """How :meth:`extract` pools, as part of the feature cache key (features pooled differently differ)."""
        return "mean"

    # --- the source head ---

    @property
    def has_source_head(self) -> bool:
        """Whether the model keeps its source's classifier, reading the ``pre_logits`` features."""
        return False

    def source_probabilities(self, pre_logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The source head's class probabilities (N x classes, rows summing to 1) from the pooled
        ``pre_logits`` features of N examples.

        :raises ZooprobeError: when the model has no source head.
        """
        raise ZooprobeError(f"'{self.entry.id}' has no source head that gives class probabilities")

    def source_class_names(self) -> list[str] | None:
        """The names of the source head's classes, where the source publishes them (None otherwise).

        A name may list synonyms separated by commas (``tench, Tinca tinca``).
        """
        return None

    def source_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The source head's logits for a preprocessed batch (N x classes), in inference mode.

        Called only when :meth:`source_class_names` names the classes.
        """
        raise ZooprobeError(f"'{self.entry.id}' has no source head to predict with")

    # --- fine-tuning ---

    def check_trainable(self) -> None:
        """:raises ZooprobeError: saying why and what to do when this model cannot be fine-tuned here."""
        if type(self).build_arm is Backbone.build_arm:
            raise ZooprobeError(
                f"'{self.entry.id}' cannot be fine-tuned: its {type(self).__name__} adapter builds no training"
                " arm; assess it with zooprobe assess"
            )

    def head_layer(self, kind: str) -> str:
        """The cut point a new head reads for the strategy ``kind`` (``as-is``, ``head`` or ``full``):
        ``pre_logits``, the classifier's input.

        :raises ZooprobeError: when the model has no classifier, naming the cut points to pick instead.
        """
        if PRE_LOGITS in self.cut_points:
            return PRE_LOGITS
        choices = ", ".join(self.cut_points)
        raise ZooprobeError(
            f"'{self.entry.id}' has no classifier layer to replace: use cut:LAYER with one of {choices}"
        )

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        """A trainable copy of the pretrained model up to the cut point ``layer`` under a new head
        ``make_head(width)`` reading its pooled features there (``width`` their size); the loaded model
        stays as it is. ``seed`` seeds whatever the framework initialises itself.
        """
        raise ZooprobeError(f"'{self.entry.id}' cannot be fine-tuned: its adapter builds no training arm")

    def build_scratch_arm(
        self,
        layer: str,
        num_classes: int,
        resolution: tuple[int, int],
        *,
        seed: int,
        make_head: HeadFactory | None = None,
    ) -> Arm:
        """The scratch baseline: the model's architecture with random initialisation (its source's own
        scheme where it has one) under a new linear head of ``num_classes`` outputs. The architecture is
        the whole model up to its classifier; a model without one is taken up to ``layer``, the cut
        point the strategy arm reads.

        With ``make_head`` (a ``cut:`` strategy's baseline): the architecture :meth:`build_arm` builds for
        ``layer`` and ``make_head``, the body up to that cut point under ``make_head(width)``, randomly
        initialised, so that the comparison measures pretraining, not capacity. An adapter written
        before this argument existed does not take it: :func:`scratch_builds_cut` says whether one does.
        """
        raise ZooprobeError(f"'{self.entry.id}' cannot train from scratch: its adapter builds no scratch arm")


def scratch_builds_cut(backbone: Backbone) -> bool:
    """Whether ``backbone``'s adapter builds a scratch arm of a cut architecture (its ``build_scratch_arm``
    takes ``make_head``); plugin adapters written before that argument existed build the whole model."""
    import inspect

    return "make_head" in inspect.signature(backbone.build_scratch_arm).parameters
