"""One process, one device: TensorFlow's default placement, no collectives."""

from __future__ import annotations

from distxfer.engines.base import Engine


class SingleEngine(Engine):
    name = "single"
