"""`distxfer bench`: every benchmark runs as one command and writes its figures as JSON (tiny
settings here: the figures themselves come from the full runs listed in BENCHMARKS.md)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def bench(tmp_path, name: str, *flags: str) -> dict:
    out = tmp_path / f"{name}.json"
    result = run_cli("bench", name, *flags, "--json", str(out), timeout=600)
    assert "the machine may be shared" in result.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] and report["versions"]["python"]
    return report["results"]


def test_bench_input_compares_every_loader_and_prints_the_photo_quality(tmp_path):
    results = bench(
        tmp_path, "input", "--images", "24", "--photos", "2", "--batches", "1", "--repeats", "1"
    )
    loaders = {key.split("/")[0] for key in results["medians"]}
    assert {"ours", "keras", "idg", "ours-cached"} <= loaders
    assert len(results["targets"]) == 4 and results["psnr_db"]["distxfer"] > 30


def test_bench_scan_lists_a_tree_cold_then_cached_then_restarts(tmp_path):
    results = bench(tmp_path, "scan", "--files", "2000", "--classes", "20")
    assert results["cold"]["train"] == results["cached"]["train"] > 1900
    assert results["restart"]["seconds"] > 0 and len(results["targets"]) == 2
    stages = results["restart"]["stages"]
    assert "listing (scan cache filled)" in stages and all(s >= 0 for s in stages.values())
    assert sum(stages.values()) == pytest.approx(results["restart"]["seconds"])


def test_bench_feature_cache_trains_the_head_phase_both_ways(tmp_path):
    flags = ["--images", "40", "--epochs", "1", "--image-size", "32", "--repeats", "1"]
    results = bench(tmp_path, "feature-cache", *flags)
    assert set(results["seconds"]) == {"images", "features"}
    assert all(0 <= a <= 1 for a in results["accuracy"].values())


def test_bench_loop_and_synthetic_time_the_trainers_step(tmp_path):
    small = ["--image-size", "32", "--steps", "2", "--repeats", "1"]
    loop = bench(tmp_path, "loop", *small)
    assert [r["trainable"] for r in loop["rows"]] == ["head", "all"]
    synthetic = bench(
        tmp_path, "synthetic", "--backbone", "MobileNetV2", "--engines", "single", *small
    )
    assert synthetic["rows"][0]["replicas"] == 1 and synthetic["rows"][0]["images_per_second"] > 0
