"""Backbones with their starting weights: ImageNet, random, a local file or a run; saving them.

`model.weights` (see `distxfer.models.pretrained`) is "imagenet" (Keras downloads the notop
weights once into its cache, under KERAS_HOME, default ~/.keras/models), None (random init, or a
`.keras` backbone's own weights), the path of a weights file (a `.weights.h5` written by
`save_backbone_weights` from a backbone of the same architecture and `backbone_args`, or Keras's
own notop `.h5`), or a distxfer run directory, whose checkpoint's backbone arrays
`load_run_backbone` copies into the built classifier. Compute nodes without internet use ImageNet
weights that `prefetch_weights` put into a shared KERAS_HOME beforehand.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from distxfer.atomic import replacing
from distxfer.config.schema import ModelConfig
from distxfer.errors import ConfigError, DistxferError, one_line
from distxfer.models import keras_internals
from distxfer.models.backbones import BackboneSpec, backbone_names, resolve_backbone
from distxfer.models.filebackbone import load_file_backbone
from distxfer.models.pretrained import (
    WeightsSource,
    require_weights_file,
    run_checkpoint,
    weights_source,
)

# Constructor arguments distxfer sets itself; a user may pass any other one via backbone_args.
_MANAGED_ARGS = {
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
    "include_preprocessing",
}


class _DownloadFailed(ConfigError):
    """Keras could not download ImageNet weights (no internet, or the host is unreachable)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def create_backbone(
    spec: BackboneSpec, model_cfg: ModelConfig, input_shape: tuple[int, int, int]
) -> keras.Model:
    """A headless backbone named "backbone": a `keras.applications` model or the cut model of a
    `.keras` file, holding ImageNet or file weights (a run's weights come later, see
    `load_run_backbone`)."""
    source = weights_source(model_cfg.weights)
    if source.kind == "file":
        require_weights_file(source.where)
    if spec.path is not None:
        backbone = load_file_backbone(spec, model_cfg, input_shape)
    else:
        kwargs = check_backbone_args(spec, model_cfg.backbone_args)
        imagenet = "imagenet" if source.kind == "imagenet" else None
        with keras_internals.fresh_layer_names():
            backbone = _construct(spec, imagenet, kwargs, input_shape)
        backbone.name = "backbone"
    if source.kind == "file":
        _load_file(backbone, source.where, spec)
    return backbone


def load_run_backbone(model: keras.Model, source: WeightsSource) -> None:
    """Copy the backbone arrays of the run `source` names into the backbone of `model`.

    The run's classifier and this one share preprocessing and backbone (as
    `check_same_backbone` made sure) and differ in the head, which comes after both in
    `model.variables`; so the backbone's variables sit at the same positions in the run's
    checkpoint, and each one's name and shape is checked there.
    """
    from distxfer.models.build import backbone_of

    snapshot = run_checkpoint(source)
    mine = {id(v) for v in backbone_of(model).variables}  # type: ignore[union-attr]
    names = snapshot.state.model_names
    for index, variable in enumerate(model.variables):
        if id(variable) not in mine:
            continue
        fits = index < len(snapshot.model) and snapshot.model[index].shape == variable.shape
        if fits and names:
            fits = index < len(names) and names[index] == variable.path
        if not fits:
            raise ConfigError(
                f"model.weights: the backbone of the run {source} does not fit this one"
                f" (variable {variable.path} {tuple(variable.shape)} has no match at position"
                f" {index} of its checkpoint); use the run's model.backbone and backbone_args"
            )
        variable.assign(snapshot.model[index])


def check_backbone_args(spec: BackboneSpec, backbone_args: Mapping[str, Any]) -> dict[str, Any]:
    """`backbone_args` as constructor keywords; a ConfigError names any the constructor lacks."""
    params = inspect.signature(getattr(keras.applications, spec.name)).parameters
    accepted = sorted(p for p in params if p not in _MANAGED_ARGS)
    for key in backbone_args:
        if key == "include_preprocessing":
            raise ConfigError(
                "model.backbone_args.include_preprocessing: distxfer feeds raw 0..255 pixels and "
                f"keeps {spec.name}'s own preprocessing on; remove this key"
            )
        if key in _MANAGED_ARGS:
            raise ConfigError(
                f"model.backbone_args.{key}: set by distxfer itself (from model.weights, "
                "model.head and data.image_size); remove this key"
            )
        if key not in params:
            takes = f"it accepts: {', '.join(accepted)}" if accepted else "it takes none"
            raise ConfigError(
                f"model.backbone_args.{key}: {spec.name} has no such argument; {takes}"
            )
    kwargs = dict(backbone_args)
    if "include_preprocessing" in params:
        kwargs["include_preprocessing"] = True
    return kwargs


def save_backbone_weights(model: keras.Model, path: str | Path) -> Path:
    """Write the backbone part of `model` to `path` (a `.weights.h5`), usable as `model.weights`."""
    from distxfer.models.build import backbone_of

    backbone = backbone_of(model)
    if backbone is None:
        raise ConfigError("model.backbone: the mlp model has no backbone weights to save")
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ConfigError(f"{path}: backbone weights files must end in .weights.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".weights.h5") as tmp:
        backbone.save_weights(tmp)
    return path


def prefetch_weights(
    names: Sequence[str],
    keras_home: str | Path | None = None,
    *,
    backbone_args: Mapping[str, Any] | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[str]:
    """Download the ImageNet notop weights of each backbone into the Keras cache.

    `names` are backbone names, or "all" for every keras.applications backbone (gigabytes).
    Returns one line per backbone naming the file it fetched (or that it was already cached).
    Run this where there is internet, into a KERAS_HOME the compute nodes share. The weights
    file Keras picks can depend on `backbone_args` (MobileNet's alpha) and the input size
    (MobileNet's rows); pass the run's values to fetch the same file the run will look for.
    """
    if any(name.strip().lower() == "all" for name in names):
        names = [name for name in backbone_names() if resolve_backbone(name).is_keras_application]
    specs = [resolve_backbone(name) for name in names]
    for spec in specs:
        if not spec.is_keras_application:
            raise ConfigError(f"model.backbone: {spec.name} has no ImageNet weights to prefetch")
    lines = []
    with _keras_home(keras_home) as home:
        cache = home / "models"
        for spec in specs:
            size = tuple(image_size) if image_size else (spec.default_size, spec.default_size)
            kwargs = check_backbone_args(spec, backbone_args or {})
            before = _files(cache)
            try:
                _construct(spec, "imagenet", kwargs, (*size, 3))
            except _DownloadFailed as exc:
                raise DistxferError(
                    f"prefetching ImageNet weights for {spec.name} needs internet access and the "
                    f"download failed ({exc.reason}); run it on a machine with internet, with "
                    f"KERAS_HOME set to a folder the compute nodes share (cache: {cache})"
                ) from None
            fetched = ", ".join(sorted(_files(cache) - before)) or "already cached"
            lines.append(f"{spec.name}: {fetched} in {cache}")
    return lines


def keras_cache_dir() -> Path:
    """KERAS_HOME as Keras resolved it at import (pretrained weights go under its `models/`)."""
    return keras_internals.keras_home()


def _construct(
    spec: BackboneSpec, weights: str | None, kwargs: dict[str, Any], input_shape: tuple[int, ...]
) -> keras.Model:
    constructor = getattr(keras.applications, spec.name)
    try:
        return constructor(include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    except ValueError as exc:
        raise ConfigError(
            f"model: keras.applications.{spec.name} refused weights={weights!r}, "
            f"backbone_args={kwargs} at input {list(input_shape)}: {one_line(exc)}"
        ) from None
    except Exception as exc:
        if "URL fetch failure" not in str(exc):
            raise
        reason = one_line(exc)
        raise _DownloadFailed(
            f"model.weights: cannot download the ImageNet weights for {spec.name} "
            f"({reason}). Downloading needs internet; Keras caches the weights in "
            f"{keras_cache_dir() / 'models'}. Prefetch them where there is internet "
            f"(`distxfer weights {spec.name}`) into a KERAS_HOME this machine reads, or set "
            "model.weights to a local weights file",
            reason,
        ) from None


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _load_file(backbone: keras.Model, path: Path, spec: BackboneSpec) -> None:
    """Load `path` into `backbone`, turning every kind of misfit into one ConfigError."""
    advice = (
        f"use a file saved from a {spec.name} backbone with the same model.backbone_args, "
        f"or Keras's notop .h5 for {spec.name}"
    )
    saved = _count_saved_variables(path)
    if saved is not None and saved != len(backbone.weights):
        raise ConfigError(
            f"model.weights: {path} holds {saved} variables but {spec.name} has "
            f"{len(backbone.weights)}, so it is not a {spec.name} backbone; {advice}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backbone.load_weights(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(
            f"model.weights: {path} does not fit {spec.name} ({one_line(exc)}); {advice}"
        ) from None


def _count_saved_variables(path: Path) -> int | None:
    """How many arrays a `.weights.h5` holds; None for other formats (Keras checks those)."""
    if not path.name.endswith(".weights.h5"):
        return None
    import h5py

    count = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal count
        count += isinstance(obj, h5py.Dataset)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise ConfigError(
            f"model.weights: {path} is not a readable HDF5 weights file ({one_line(exc)})"
        ) from None
    return count


@contextlib.contextmanager
def _keras_home(path: str | Path | None) -> Iterator[Path]:
    """Point Keras's download cache at `path` for the duration (KERAS_HOME is read at import)."""
    if path is None:
        yield keras_cache_dir()
        return
    path = Path(path).expanduser().resolve()
    (path / "models").mkdir(parents=True, exist_ok=True)
    with keras_internals.keras_home_set_to(path):
        yield path
