"""Built-in source: every weight of every model in the installed torchvision.

Everything comes from torchvision itself: ``list_models`` and each weights enum's ``meta``
(parameters, GFLOPS as torchvision reports them, file size, metrics, min size, categories) and
``transforms`` (resize, crop, interpolation, mean/std). Feature dimensions and head sizes of
classification models are read off the architecture built on the meta device (no weights).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import urllib.error
import urllib.parse
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..backbones.backbone import block_cut_points, last_linear
from ..backbones.contract import Backbone
from ..backbones.torchvision_backbone import TorchvisionBackbone
from ..catalog.schema import DATASET_SIZES, Compute, Entry, InputSpec, PretrainStage, ReportedMetric
from ..errors import ZooprobeError
from ..plugins.hookspecs import hookimpl
from ..plugins.source import Source

# torchvision's metric dataset names -> catalog dataset names
_DATASETS = {
    "ImageNet-1K": "imagenet-1k",
    "COCO-val2017": "coco",
    "COCO-val2017-VOC-labels": "coco",
    "Kinetics-400": "kinetics-400",
}
_TASKS = {
    "torchvision.models.detection": "object-detection",
    "torchvision.models.segmentation": "image-segmentation",
    "torchvision.models.video": "video-classification",
    "torchvision.models.optical_flow": "optical-flow",
    "torchvision.models.quantization": "image-classification",
}


def _task(builder: Any) -> str:
    module = builder.__module__
    for prefix, task in _TASKS.items():
        if module.startswith(prefix):
            return task
    return "image-classification"


def head_info(model_name: str) -> tuple[int, int] | None:
    """(feature_dim, head_params) of a classification model: its last ``nn.Linear``, built on meta."""
    import torch
    from torchvision.models import get_model

    with torch.device("meta"), warnings.catch_warnings():
        # googlenet/inception warn about their default init, which a meta build never runs
        warnings.simplefilter("ignore", FutureWarning)
        model = get_model(model_name, weights=None)
    last = last_linear(model)
    if last is None:
        return None
    return int(last.in_features), sum(p.numel() for p in last.parameters())


def _pretraining(weight_name: str, metric_datasets: list[str]) -> tuple[PretrainStage, ...]:
    stages = []
    if "SWAG" in weight_name:
        stages.append(PretrainStage("ig-3.5b", DATASET_SIZES["ig-3.5b"], "weakly-supervised"))
    for ds in metric_datasets:
        name = _DATASETS.get(ds)
        if name and all(s.dataset != name for s in stages):
            stages.append(PretrainStage(name, DATASET_SIZES.get(name), "supervised"))
    return tuple(stages)


def transform_arguments(transforms: Any) -> dict[str, Any]:
    """The arguments a weights' ``transforms`` partial builds its transform with: the partial's own
    keywords over the defaults of the class it wraps (``ImageClassification`` resizes to 256 unless told)."""
    func = getattr(transforms, "func", transforms)
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        parameters = ()  # type: ignore[assignment]
    arguments = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    arguments.update(getattr(transforms, "keywords", {}) or {})
    return arguments


def input_spec(transforms: Any, meta: dict[str, Any]) -> tuple[InputSpec, tuple[int, int] | None]:
    """The input spec of weights with these ``transforms`` and ``meta``, and their crop (the default resolution).

    Only ``ImageClassification`` transforms (resize the shorter side, centre-crop, normalise) are
    described in full; the crop of other transforms is kept as the resolution they report.
    """
    from torchvision.transforms._presets import ImageClassification

    arguments = transform_arguments(transforms)
    crop, resize = arguments.get("crop_size"), arguments.get("resize_size")
    crop_px = crop[0] if isinstance(crop, list | tuple) else crop
    resize_px = resize[0] if isinstance(resize, list | tuple) else resize
    resolution = (int(crop_px), int(crop_px)) if crop_px else None
    is_cls = getattr(transforms, "func", None) is ImageClassification
    interp = arguments.get("interpolation")
    spec = InputSpec(
        channels=3,
        default_resolution=resolution,
        min_resolution=tuple(meta["min_size"]) if "min_size" in meta else None,
        fixed_resolution=None,
        mean=tuple(arguments["mean"]) if is_cls else None,
        std=tuple(arguments["std"]) if is_cls else None,
        interpolation=getattr(interp, "value", None) if is_cls else None,
        # unrounded: the resize is floor(crop / crop_pct), which must give resize_px back exactly
        crop_pct=crop_px / resize_px if crop_px and resize_px else None,
        crop_mode="center" if is_cls else None,
    )
    return spec, resolution


class TorchvisionSource(Source):
    """Every weights enum member of every ``torchvision.models.list_models()`` model."""

    name = "torchvision"
    package = "torchvision"
    extra = "torch"
    ships_snapshot = True

    def load(self, entry: Entry) -> Backbone:
        self.require()
        if "image-classification" not in entry.tasks:
            raise ZooprobeError(
                f"'{entry.id}' is a {', '.join(entry.tasks)} model; zooprobe loads image-classification "
                "backbones of torchvision (search with --task image-classification)"
            )
        return load_backbone(entry)

    def package_version(self) -> str | None:
        try:
            return version("torchvision")
        except PackageNotFoundError:
            return None

    def entries(self) -> Iterator[Entry]:
        import torchvision
        from torchvision.models import get_model_builder, get_model_weights, list_models

        tv_version = torchvision.__version__.split("+")[0]
        for model_name in list_models():
            builder = get_model_builder(model_name)
            task = _task(builder)
            weights_enum = get_model_weights(model_name)
            members = list(weights_enum)
            head = None
            if task == "image-classification" and not model_name.startswith("quantized_"):
                try:
                    head = head_info(model_name)
                except Exception:  # noqa: BLE001 - unknown stays unknown
                    head = None
            default_name = weights_enum.DEFAULT.name if hasattr(weights_enum, "DEFAULT") else None
            for weights in members:
                meta = weights.meta
                prov: dict[str, str] = {}
                metric_sets = list(meta.get("_metrics", {}))
                metrics = []
                for ds, values in meta.get("_metrics", {}).items():
                    for metric, value in values.items():
                        if value is None or math.isnan(float(value)):
                            continue  # torchvision writes NaN for weights it did not measure (vgg16 features)
                        metrics.append(
                            ReportedMetric(_DATASETS.get(ds, ds), metric.replace("acc@", "top"), float(value))
                        )
                if metrics:
                    prov["metrics"] = f"torchvision {tv_version} weights meta _metrics"
                spec, resolution = input_spec(weights.transforms, meta)
                prov["input"] = (
                    f"torchvision {tv_version} weights transforms (keywords over the class defaults) and meta"
                )
                compute = None
                if meta.get("_ops") is not None:
                    compute = Compute(float(meta["_ops"]), "GFLOPS", resolution[0] if resolution else None)
                    prov["macs"] = f"torchvision {tv_version} weights meta _ops (GFLOPS)"
                params = meta.get("num_params")
                if params is not None:
                    prov["params"] = f"torchvision {tv_version} weights meta num_params"
                categories = meta.get("categories")
                feature_dim = params_no_head = None
                if head is not None and categories is not None:
                    feature_dim = head[0]
                    # the head's size scales with the number of classes these weights have
                    per_class = head[1] / 1000
                    params_no_head = int(round(params - per_class * len(categories))) if params else None
                    prov["feature_dim"] = prov["params_no_head"] = (
                        "last nn.Linear of the model built on the meta device"
                    )
                file_size = meta.get("_file_size")
                if file_size is not None:
                    prov["file_size_bytes"] = f"torchvision {tv_version} weights meta _file_size (MB)"
                stages = _pretraining(weights.name, metric_sets)
                if stages:
                    prov["pretraining"] = "torchvision weights name and metric datasets"
                weights_license = meta.get("license")
                if weights_license:
                    prov["weights_license"] = f"torchvision {tv_version} weights meta"
                tags = [weights.name.lower(), task]
                if weights.name == default_name:
                    tags.append("default")
                yield Entry(
                    source="torchvision",
                    name=f"{model_name}.{weights.name}",
                    architecture=model_name,
                    source_version=tv_version,
                    family=builder.__module__.rsplit(".", 1)[-1],
                    tasks=(task,),
                    modality="video" if task == "video-classification" else "image",
                    framework="pytorch",
                    input=spec,
                    feature_dim=feature_dim,
                    num_classes=len(categories) if categories is not None else None,
                    params=params,
                    params_no_head=params_no_head,
                    compute=compute,
                    pretraining=stages,
                    metrics=tuple(metrics),
                    weights_license=weights_license,
                    code_license="bsd-3-clause",
                    file_size_bytes=int(float(file_size) * 1024 * 1024) if file_size is not None else None,
                    handle=weights.url,
                    weights_url=weights.url,
                    tags=tuple(tags),
                    aliases=(),
                    description=" ".join((meta.get("_docs") or "").split()) or None,
                    provenance=tuple(sorted(prov.items())),
                )


def _safe_state_dict_loading() -> contextlib.AbstractContextManager[None]:
    """torchvision fetches weights with torch.hub.load_state_dict_from_url, whose weights_only
    defaults to False (a pickle can run code); force weights_only=True while a model is built."""
    import torchvision.models._api as api

    @contextlib.contextmanager
    def patched() -> Iterator[None]:
        original = api.load_state_dict_from_url
        api.load_state_dict_from_url = functools.partial(original, weights_only=True)
        try:
            yield
        finally:
            api.load_state_dict_from_url = original

    return patched()


def load_backbone(entry: Entry) -> Backbone:
    """Build the entry's model with its weights through torchvision's weights enum (torch hub cache)."""
    from torchvision.models import get_model, get_model_weights

    weights_name = entry.name.split(".", 1)[1]
    weights = get_model_weights(entry.architecture)[weights_name]
    try:
        with _safe_state_dict_loading():
            model = get_model(entry.architecture, weights=weights)
    except urllib.error.URLError as exc:
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(weights.url).path).name
        raise ZooprobeError(
            f"the weights of '{entry.id}' are not in torch's cache ({cached}) and downloading them failed"
            f" ({exc.reason}); fetch {weights.url} once with network access, or set TORCH_HOME to a cache"
            " that holds the file"
        ) from exc
    model.eval()
    classifier = last_linear(model)
    return TorchvisionBackbone(
        entry=entry, model=model, cut_points=block_cut_points(model, classifier), classifier=classifier
    )


@hookimpl
def register_sources() -> list[Source]:
    return [TorchvisionSource()]
