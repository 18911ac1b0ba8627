"""Shared set-up for the classifier benchmarks: the default benchmark's task, original and gold models (cached)."""
from __future__ import annotations

import platform
import statistics
import time

import torch


def default_setup(seed: int = 0, forget: str = "random:0.1", dataset: str = "mnist1d", model: str = "cnn"):
    from obliviate.loop import Loop
    from obliviate.presets import load_preset
    from obliviate.vision import Recipe, make_task, train_reference
    preset = load_preset(dataset, model)
    task = make_task(dataset, forget, seed=seed, **preset["dataset"])
    loop = Loop(progress=False)
    recipe = Recipe.from_dict(preset["recipe"])
    original, t_orig = train_reference("original", task, model, recipe, loop, model_kwargs=preset["model"])
    gold, t_gold = train_reference("gold", task, model, recipe, loop, model_kwargs=preset["model"])
    return preset, task, loop, recipe, original, gold, t_orig, t_gold


def timed(fn, repeats: int):
    """Median wall time of ``repeats`` calls of fn (after one warm-up call) and the last result."""
    fn()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def machine() -> str:
    import accelerate
    import numpy
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}, torch {torch.__version__}, accelerate {accelerate.__version__}, "
            f"numpy {numpy.__version__}")


def vision_grid(name: str, forgets, methods, seeds: int, runs: str, **family_settings):
    """Run (or resume) a classifier grid on the engine; returns its run store."""
    from obliviate.grid import GridOptions, run_grid
    from obliviate.vision.family import VisionFamily
    options = GridOptions(methods=list(methods), seeds=list(range(seeds)), forgets=list(forgets), name=name,
                          root=runs, progress=False)
    return run_grid(VisionFamily(progress=False, **family_settings), options, log=print).store
