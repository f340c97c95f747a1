"""Every shipped config loads (resolved), builds its model and applies each of its phases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from distxfer.config import load_config

CONFIGS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_family_configs_the_product_promises_exist():
    assert {
        "demo.yaml",
        "demo_source.yaml",
        "vgg16.yaml",
        "resnet50.yaml",
        "inceptionv3.yaml",
        "efficientnetb0.yaml",
        "mobilenetv2.yaml",
        "mnist_mlp.yaml",
    } <= set(CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model_and_every_phase(name):
    import keras

    from distxfer.models import apply_phase, build_model
    from distxfer.models.backbones import resolve_backbone

    config = load_config(Path("configs") / name)
    spec = resolve_backbone(config.model.backbone)
    side = max(spec.min_size, 32)  # small, to keep the test fast; phases do not depend on the size
    channels = 1 if config.data.color_mode == "grayscale" else 3
    keras.config.set_dtype_policy("float32")
    model = build_model(replace(config.model, weights=None), 5, (side, side), channels)
    for phase in config.phases:
        summary = apply_phase(model, phase)
        assert summary.trainable_params > 0, f"{name}: phase {phase.name} trains nothing"
    assert config.data.image_size[0] >= spec.min_size
