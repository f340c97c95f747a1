"""distxfer: fine-tune pretrained Keras image models on your own images, from one CPU to many GPUs and nodes."""

__version__ = "0.1.0"
