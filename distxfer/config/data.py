"""The `data` section of the config: where the images are, how they are augmented and batched.

Split from `schema.py` (which re-exports both classes); the same rules hold: types enforced by
the loader, derived values by `resolve`, and `check` methods that only read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from distxfer.config.checks import require as _require


@dataclass
class AugmentConfig:
    """Training-time augmentation, with ImageDataGenerator's meaning for each knob."""

    rotation: float = 0.0  # degrees, like rotation_range: uniform in [-r, r]
    width_shift: float = 0.0  # fraction of width, like width_shift_range
    height_shift: float = 0.0  # fraction of height
    shear: float = 0.0  # degrees, like shear_range
    zoom: list[float] | float = 0.0  # z -> [1-z, 1+z], or an explicit [lo, hi]
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness: list[float] | None = None  # [lo, hi] multiplicative, like brightness_range
    # [min_area, max_area] fraction, e.g. [0.08, 1.0]
    random_resized_crop: list[float] | None = None
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"
    fill_value: float = 0.0

    def zoom_range(self) -> tuple[float, float]:
        if isinstance(self.zoom, list):
            return float(self.zoom[0]), float(self.zoom[1])
        return 1.0 - float(self.zoom), 1.0 + float(self.zoom)

    @property
    def geometric(self) -> bool:
        """Whether any knob moves pixels (so the projective transform must run)."""
        return bool(
            self.rotation
            or self.width_shift
            or self.height_shift
            or self.shear
            or self.zoom_range() != (1.0, 1.0)
            or self.horizontal_flip
            or self.vertical_flip
        )

    @property
    def enabled(self) -> bool:
        """Whether training augments at all."""
        return bool(self.geometric or self.brightness or self.random_resized_crop)

    def check(self, key: str) -> None:
        _require(0 <= self.rotation <= 180, f"{key}.rotation", "must be between 0 and 180 degrees")
        for name in ("width_shift", "height_shift"):
            _require(0 <= getattr(self, name) < 1, f"{key}.{name}", "must be a fraction in [0, 1)")
        _require(0 <= self.shear < 90, f"{key}.shear", "must be between 0 and 90 degrees")
        if isinstance(self.zoom, list):
            _require(
                len(self.zoom) == 2 and 0 < self.zoom[0] <= self.zoom[1],
                f"{key}.zoom",
                "must be a number z in [0, 1) or a pair [lo, hi] with 0 < lo <= hi",
            )
        else:
            _require(0 <= self.zoom < 1, f"{key}.zoom", "must be in [0, 1) or a pair [lo, hi]")
        if self.brightness is not None:
            _require(
                len(self.brightness) == 2 and 0 <= self.brightness[0] <= self.brightness[1],
                f"{key}.brightness",
                "must be a pair [lo, hi] with 0 <= lo <= hi, e.g. [0.8, 1.2]",
            )
        if self.random_resized_crop is not None:
            lo_hi = self.random_resized_crop
            _require(
                len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1,
                f"{key}.random_resized_crop",
                "must be a pair [min_area, max_area] of fractions, e.g. [0.08, 1.0]",
            )


@dataclass
class DataConfig:
    """Where the images are and how they become batches."""

    # class folders, or a TFRecord folder made by `distxfer data convert`
    train_dir: str | None = None
    val_dir: str | None = None
    val_split: float = 0.0  # fraction of train_dir held out per class when val_dir is not given
    # cross-validation (`distxfer cv` sets these): train_dir in `folds` stratified folds,
    # validating on fold number `fold` (0-based) and training on the others; 0 = off
    folds: int = 0
    fold: int = 0
    test_dir: str | None = None
    image_size: list[int] | None = None  # [height, width]; null = the backbone's native size
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    # per replica (per GPU / per worker thread); global = batch_size x replicas
    batch_size: int = 32
    # images per optimizer step whatever the hardware: batch_size x replicas x accumulation
    global_batch: int | None = None
    # "balanced" (inverse class frequency, normalised) or {class_name: weight}; null = none
    class_weight: str | dict[str, float] | None = None
    shuffle: bool = True
    cache: Literal["none", "memory", "disk"] = "none"  # decoded, resized images
    scan: Literal["quick", "full", "off"] = "quick"  # look for bad files before training
    scan_cache: bool = True  # keep the quick scan's verdicts by (path, size, mtime)
    bad_files: Literal["error", "skip"] = "error"
    follow_links: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # where the warp and brightness run: in the input pipeline (host) or the compiled step
    augment_on: Literal["host", "device"] = "host"
    # a frozen-backbone phase without augmentation trains the head on features computed once
    feature_cache: bool = True

    @property
    def channels(self) -> int:
        """Channels of the images the model takes: 1 for grayscale, else 3."""
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def image_hw(self) -> tuple[int, int]:
        """`image_size` as (height, width); set for every loaded config (see `resolve`)."""
        if self.image_size is None:
            raise ValueError("data.image_size is unresolved; load configs with load_config")
        return int(self.image_size[0]), int(self.image_size[1])

    def check(self, key: str) -> None:
        _require(self.batch_size >= 1, f"{key}.batch_size", "must be at least 1")
        if self.global_batch is not None:
            _require(
                self.global_batch >= 1 and self.global_batch % self.batch_size == 0,
                f"{key}.global_batch",
                f"must be a positive multiple of data.batch_size ({self.batch_size})",
            )
        self._check_class_weight(f"{key}.class_weight")
        _require(0 <= self.val_split < 1, f"{key}.val_split", "must be a fraction in [0, 1)")
        _require(
            not (self.val_dir and self.val_split),
            f"{key}.val_split",
            "cannot be used together with data.val_dir; set one of them",
        )
        _require(
            self.folds == 0 or self.folds >= 2, f"{key}.folds", "must be 0 (off) or at least 2"
        )
        if self.folds:
            _require(
                0 <= self.fold < self.folds,
                f"{key}.fold",
                f"must be a fold number from 0 to {self.folds - 1} (data.folds={self.folds})",
            )
            _require(
                not (self.val_dir or self.val_split),
                f"{key}.folds",
                "replaces data.val_dir and data.val_split (each fold validates on its own"
                " part of data.train_dir); remove them from the config",
            )
        if self.image_size is not None:
            _require(
                len(self.image_size) == 2 and min(self.image_size) >= 8,
                f"{key}.image_size",
                "must be [height, width], each at least 8 pixels",
            )
        self.augment.check(f"{key}.augment")

    def _check_class_weight(self, key: str) -> None:
        weights = self.class_weight
        if isinstance(weights, str):
            _require(
                weights == "balanced",
                key,
                f"{weights!r} is not balanced; give balanced, a mapping {{class_name: weight}}"
                " or null",
            )
        elif isinstance(weights, dict):
            _require(bool(weights), key, "the mapping is empty; name at least one class")
            for name, value in weights.items():
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                _require(
                    ok and math.isfinite(value) and value >= 0,
                    f"{key}.{name}",
                    f"must be a number 0 or more, got {value!r}",
                )
