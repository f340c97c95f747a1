"""Each backbone's `preprocess_input`, rebuilt from built-in Keras layers.

The input pipeline feeds raw uint8 pixels, and the model does the backbone's own preprocessing
as its first layers. Built-in layers only (no Lambda, no custom class), so an exported `.keras`
file loads with plain `keras.models.load_model`. The layers compute in float32 whatever the
global dtype policy, so mixed precision does not round the pixel values; the backbone casts
afterwards. None of them has trainable weights.
"""

from __future__ import annotations

import keras
import numpy as np

from distxfer.models.backbones import PreprocessMode

# ImageNet channel statistics used by keras.applications.imagenet_utils.
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float64)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float64)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float64)

PREFIX = "preprocess"  # every preprocessing layer's name starts with this


def preprocessing_layers(mode: PreprocessMode, rescale: float = 1.0 / 255.0) -> list[keras.Layer]:
    """The layers turning uint8 pixels [B,H,W,C] into what a backbone of this mode expects."""
    if mode == "tf":
        return [_rescaling(1.0 / 127.5, -1.0)]
    if mode == "torch":
        scale = 1.0 / (255.0 * IMAGENET_STD_RGB)
        offset = -IMAGENET_MEAN_RGB / IMAGENET_STD_RGB
        return [_rescaling(scale.tolist(), offset.tolist())]
    if mode == "caffe":
        return [_rescaling(1.0, 0.0, "cast"), _rgb_to_bgr_minus_mean()]
    if mode == "none":
        return [_rescaling(1.0, 0.0, "cast")]
    if mode == "rescale":
        return [_rescaling(float(rescale), 0.0)]
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def apply_preprocessing(
    x: keras.KerasTensor, mode: PreprocessMode, rescale: float = 1.0 / 255.0
) -> keras.KerasTensor:
    """`x` passed through `preprocessing_layers(mode, rescale)`."""
    for layer in preprocessing_layers(mode, rescale):
        x = layer(x)
    return x


def is_preprocessing_layer(layer: keras.Layer) -> bool:
    return layer.name.startswith(PREFIX)


def _rescaling(scale, offset, suffix: str = "scale") -> keras.layers.Rescaling:
    # Rescaling casts its input (uint8 included) to its float32 compute dtype first.
    return keras.layers.Rescaling(
        scale, offset, dtype="float32", trainable=False, name=f"{PREFIX}_{suffix}"
    )


def _rgb_to_bgr_minus_mean() -> keras.layers.Conv2D:
    """A fixed 1x1 convolution: output channel c is input channel 2-c minus the BGR mean."""
    conv = keras.layers.Conv2D(
        3,
        1,
        dtype="float32",
        trainable=False,
        name=f"{PREFIX}_bgr",
        kernel_initializer="zeros",
        bias_initializer="zeros",
    )
    conv.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    conv.set_weights([kernel, (-CAFFE_MEAN_BGR).astype(np.float32)])
    return conv
