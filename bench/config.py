"""Sizes, repeats and budgets of a benchmark run: the full run and the `--smoke` run."""

import dataclasses
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny Shakespeare's folder: $TINY_SHAKESPEARE_DIR, else ../shared/data/tiny_shakespeare beside the clone.
SHAKESPEARE_DIR = os.environ.get("TINY_SHAKESPEARE_DIR") or os.path.normpath(
    os.path.join(ROOT, "..", "shared", "data", "tiny_shakespeare"))
DEFAULT_DATA = os.path.join(SHAKESPEARE_DIR, "input.txt")
DEFAULT_OUT = os.path.join(ROOT, "bench", "results")
SECTIONS = ("pipeline", "training", "quality", "generation", "memory", "ceiling")


@dataclasses.dataclass
class Settings:
    data: str = DEFAULT_DATA
    seed: int = 0
    smoke: bool = False
    repeats: int = 5                 # timed runs per short figure (after a warm-up)
    units: int = 128                 # the baseline's architecture: LSTM(128), 1 layer
    # pipeline
    pipeline_lines: int = None       # None = every training line
    pipeline_baseline_batches: int = 1000
    python_docs_chars: int = None    # None = the whole built-in corpus
    # training throughput
    train_lines: int = 8000          # lines per timed epoch (package) / the baseline's line pool
    train_chunk_chars: int = 260_000  # characters per timed epoch in chunks mode
    batch_sizes: tuple = (64, 128, 256, 512)
    train_epochs: int = 5            # timed epochs per batch size, after one warm-up epoch
    baseline_train_steps: int = 150  # timed steps per baseline run
    baseline_train_warmup: int = 20
    baseline_train_runs: int = 3
    # quality at equal time
    quality_seconds: float = 300.0
    quality_checkpoints: int = 10    # validation points on the curve (clock paused while evaluating)
    quality_curve_val_lines: int = 800  # validation lines used for the curve points (final uses all)
    quality_val_lines: int = None    # None = every validation line for the final figure
    # generation
    gen_single_length: int = 1000
    gen_baseline_length: int = 200
    gen_baseline_runs: int = 1       # the baseline's 200 chars take tens of seconds: run once
    gen_batch: int = 64
    gen_batch_length: int = 300
    gen_runs: int = 5
    tflite_step_calls: int = 2000
    # memory (each in a subprocess)
    memory_train_steps: int = 200
    memory_baseline_steps: int = 200
    memory_gen_length: int = 300
    memory_baseline_gen_length: int = 50
    # hardware ceiling
    matmul_n: int = 2048


def smoke_settings(**overrides):
    s = Settings(
        smoke=True, repeats=2, pipeline_lines=300, pipeline_baseline_batches=20, python_docs_chars=20_000,
        train_lines=200, train_chunk_chars=12_000, batch_sizes=(64,), train_epochs=1,
        baseline_train_steps=5, baseline_train_warmup=2, baseline_train_runs=1,
        quality_seconds=1.0, quality_checkpoints=2, quality_curve_val_lines=16, quality_val_lines=40,
        gen_single_length=20, gen_baseline_length=5, gen_batch=4, gen_batch_length=10, gen_runs=2,
        tflite_step_calls=50, memory_train_steps=3, memory_baseline_steps=3, memory_gen_length=10,
        memory_baseline_gen_length=3, matmul_n=256)
    return dataclasses.replace(s, **overrides)


def to_json(settings):
    """`settings` as JSON, for a section's child process (`from_json` reads it back)."""
    return json.dumps(dataclasses.asdict(settings))


def from_json(text):
    fields = json.loads(text)
    fields["batch_sizes"] = tuple(fields["batch_sizes"])  # JSON has lists, not tuples
    return Settings(**fields)
