"""A built-in demo dataset pair, drawn procedurally, to show transfer learning without a download.

SOURCE task: 8 shapes (circle, square, triangle, star, cross, hexagon, ring, crescent) with a
few hundred PNG images each, to pretrain on. TARGET task: 5 other shapes (arrow, heart,
pentagon, L-shape, a pair of dots) with few training images each plus validation and test
images, as JPEGs. Shapes have random colours, sizes, positions and rotations over a textured,
cluttered background, so neither task is trivial, and features learned on the first help the
second. Images are small (48x48 by default) so a small backbone trains in a minute or two on a
laptop CPU.

Every image is drawn from its own seed (seed, task, split, class, index), so the output is
the same on every run and machine. `write_demo_datasets` writes each task into a temporary
folder and renames it into place, so an interrupted write is redone and a complete one is
left alone.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SOURCE_CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "crescent")
TARGET_CLASSES = ("arrow", "heart", "pentagon", "lshape", "pair")
DEMO_VERSION = 2  # 2: larger shapes, less clutter, drawn at 48x48 in parallel
_MARKER = "demo.json"
_SUPERSAMPLE = 2  # draw large, then shrink: smooth edges
_PARALLEL_FROM = 1000  # images; fewer are drawn in this process


@dataclass(frozen=True)
class DemoPaths:
    """Class-folder roots of the demo datasets."""

    source_train: str  # split it with data.val_split
    target_train: str
    target_val: str
    target_test: str


def write_demo_datasets(
    root: str,
    seed: int = 0,
    *,
    source_per_class: int = 250,
    target_train_per_class: int = 30,
    target_val_per_class: int = 20,
    target_test_per_class: int = 30,
    image_size: int = 48,
) -> DemoPaths:
    """Write (or find already written) the SOURCE and TARGET datasets under `root`."""
    root = os.path.abspath(os.path.expanduser(root))
    source = {"train": source_per_class}
    target = {
        "train": target_train_per_class,
        "val": target_val_per_class,
        "test": target_test_per_class,
    }
    for task, classes, counts, ext in (
        ("source", SOURCE_CLASSES, source, "png"),
        ("target", TARGET_CLASSES, target, "jpg"),
    ):
        spec = {
            "version": DEMO_VERSION,
            "seed": seed,
            "task": task,
            "classes": list(classes),
            "counts": counts,
            "image_size": image_size,
            "format": ext,
        }
        _write_task(os.path.join(root, task), spec)
    return DemoPaths(
        *(
            os.path.join(root, task, split)
            for task, split in (
                ("source", "train"),
                ("target", "train"),
                ("target", "val"),
                ("target", "test"),
            )
        )
    )


def _write_task(folder: str, spec: dict) -> None:
    if _read_marker(folder) == spec:
        return
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = f"{folder}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        task_id = ("source", "target").index(spec["task"])
        jobs = [
            (os.path.join(tmp, split, name), spec, (spec["seed"], task_id, split_id, class_id), n)
            for split_id, (split, n) in enumerate(spec["counts"].items())
            for class_id, name in enumerate(spec["classes"])
        ]
        _run_all(_write_class, jobs, parallel=sum(job[-1] for job in jobs) >= _PARALLEL_FROM)
        with open(os.path.join(tmp, _MARKER), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1)
        if _read_marker(folder) == spec:  # another process finished first
            return
        if os.path.exists(folder):
            stale = f"{folder}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_all(function, jobs: list, parallel: bool) -> None:
    """`function(job)` for every job, in worker processes (one per core) when `parallel`."""
    workers = min(len(jobs), os.cpu_count() or 1) if parallel else 1
    if workers == 1:
        for job in jobs:
            function(job)
        return
    # spawn, not fork: the caller may already run TensorFlow's threads
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(function, jobs))


def _write_class(job: tuple[str, dict, tuple[int, ...], int]) -> None:
    """Draw and save one class folder of one split: image i from seed (*key, i)."""
    class_dir, spec, key, count = job
    name = os.path.basename(class_dir)
    os.makedirs(class_dir)
    for i in range(count):
        image = draw_image(name, np.random.default_rng([*key, i]), spec["image_size"])
        _save(image, os.path.join(class_dir, f"{name}_{i:04d}.{spec['format']}"))


def _read_marker(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, _MARKER), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(image: Image.Image, path: str) -> None:
    if path.endswith(".jpg"):
        image.save(path, "JPEG", quality=90)
    else:
        image.save(path, "PNG")


def draw_image(shape: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One RGB image of `shape` at a random place, size, angle and colour on a busy background."""
    big = size * _SUPERSAMPLE
    image = _background(rng, size)
    fill = _contrasting_colour(rng, np.asarray(image).reshape(-1, 3).mean(0))
    radius = rng.uniform(0.25, 0.4) * big
    centre = rng.uniform(radius * 0.85, big - radius * 0.85, size=2)
    mask = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, centre, radius, rng.uniform(0, 2 * math.pi))
    image.paste(Image.new("RGB", (big, big), fill), (0, 0), mask)
    _clutter(ImageDraw.Draw(image), rng, big, int(rng.integers(0, 2)), near=np.array(fill))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A textured colour gradient with a few faint strokes, at `_SUPERSAMPLE` times `size`."""
    ramp = np.linspace(0.0, 1.0, size)
    angle = rng.uniform(0, 2 * math.pi)
    t = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    a = rng.uniform(0, 255, 3)
    b = np.clip(a + rng.uniform(-50, 50, 3), 0, 255)
    pixels = a + (b - a) * t[..., None] + rng.normal(0, 8, (size, size, 3))
    big = size * _SUPERSAMPLE
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize(
        (big, big), Image.Resampling.BILINEAR
    )
    _clutter(ImageDraw.Draw(image), rng, big, int(rng.integers(1, 4)), near=a)
    return image


def _clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, big: int, count: int, near: np.ndarray
) -> None:
    """Thin lines and small circles in colours not far from `near`."""
    for _ in range(count):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, big, 4))
        colour = tuple(int(v) for v in np.clip(near + rng.uniform(-70, 70, 3), 0, 255))
        width = int(rng.integers(1, _SUPERSAMPLE + 1))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
        else:
            r = float(rng.uniform(2, 5) * _SUPERSAMPLE)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=colour, width=width)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, ...]:
    """A random colour whose brightness differs from the background's by at least 90."""
    luma = np.array([0.299, 0.587, 0.114])
    for _ in range(100):
        colour = rng.integers(0, 256, 3)
        if abs(float((colour - background) @ luma)) >= 90:
            break
    else:
        colour = np.where(background @ luma > 127, 0, 255) * np.ones(3)
    return tuple(int(v) for v in colour)


def _polygon(
    points: list[tuple[float, float]], centre: np.ndarray, radius: float, angle: float
) -> list[tuple[float, float]]:
    """Unit-shape points rotated by `angle`, scaled by `radius`, moved to `centre`."""
    c, s = math.cos(angle), math.sin(angle)
    return [
        (float(centre[0] + radius * (c * x - s * y)), float(centre[1] + radius * (s * x + c * y)))
        for x, y in points
    ]


def _regular(n: int, inner: float | None = None) -> list[tuple[float, float]]:
    """A regular n-gon, or an n-pointed star when `inner` radius is given."""
    if inner is None:
        return [(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)]
    return [
        (r * math.cos(math.pi * k / n), r * math.sin(math.pi * k / n))
        for k in range(2 * n)
        for r in [1.0 if k % 2 == 0 else inner]
    ]


_UNIT_SHAPES = {
    "square": _regular(4),
    "triangle": _regular(3),
    "star": _regular(5, inner=0.45),
    "hexagon": _regular(6),
    "pentagon": _regular(5),
    "cross": [
        (0.3, 1),
        (-0.3, 1),
        (-0.3, 0.3),
        (-1, 0.3),
        (-1, -0.3),
        (-0.3, -0.3),
        (-0.3, -1),
        (0.3, -1),
        (0.3, -0.3),
        (1, -0.3),
        (1, 0.3),
        (0.3, 0.3),
    ],
    "arrow": [(-1, 0.2), (0.2, 0.2), (0.2, 0.6), (1, 0), (0.2, -0.6), (0.2, -0.2), (-1, -0.2)],
    "lshape": [(-0.7, -1), (-0.15, -1), (-0.15, 0.45), (0.7, 0.45), (0.7, 1), (-0.7, 1)],
    "heart": [
        (
            16 * math.sin(t) ** 3 / 17,
            -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17,
        )
        for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)
    ],
}


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, centre: np.ndarray, radius: float, angle: float
) -> None:
    if shape in _UNIT_SHAPES:
        draw.polygon(_polygon(_UNIT_SHAPES[shape], centre, radius, angle), fill=255)
        return
    circles = {  # (x, y, r, value) in unit coordinates; later circles paint over earlier ones
        "circle": [(0, 0, 1, 255)],
        "ring": [(0, 0, 1, 255), (0, 0, 0.6, 0)],
        "crescent": [(0, 0, 1, 255), (0.45, 0, 0.85, 0)],
        "pair": [(-0.55, 0, 0.42, 255), (0.55, 0, 0.42, 255)],
    }[shape]
    for x, y, r, value in circles:
        ((cx, cy),) = _polygon([(x, y)], centre, radius, angle)
        draw.ellipse(
            [cx - r * radius, cy - r * radius, cx + r * radius, cy + r * radius], fill=value
        )
