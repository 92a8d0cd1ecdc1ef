"""Where the time goes: `tf.profiler` traces of the hot paths, summarised by op type.

    python -m bench.profile                 # all cases
    python -m bench.profile --only generate_64 --logdir /tmp/ktg-profile

Each case runs once to warm up, then once under `tf.profiler.experimental`;
the trace lands in `<logdir>/<case>/` (open it in TensorBoard's Profile tab
for the timeline). This script reads the XPlane the profiler wrote and prints
the op types with the most time on the host: kernel time summed per op type
(`name:Type` events), with its share of the traced wall time and the count
per generated token or training step. The benchmark (`bench/run.py`) gives
the speeds; this tells which ops to blame for them.
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import keras_textgen as ktg
from keras_textgen import generation as generation_lib

from bench import corpora
from bench import generation as bench_generation
from bench.config import DEFAULT_DATA


def trace(logdir, fn):
    """Runs `fn` once to warm up, then once traced; returns the traced wall seconds."""
    fn()
    # Level 3 records every kernel, the cheap ones run inline included.
    tf.profiler.experimental.start(logdir, options=tf.profiler.experimental.ProfilerOptions(host_tracer_level=3))
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    tf.profiler.experimental.stop()
    return seconds


def op_times(logdir):
    """`{op type: (total seconds, count)}` from the newest XPlane under `logdir` (host kernels only)."""
    files = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not files:
        raise FileNotFoundError(f"no .xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(max(files, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    totals, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                # A TensorFlow kernel is traced as "<op name>:<op type>" with the type as display name;
                # executor, thread-pool and tf.data events have no display name.
                op_type = meta.display_name
                if not op_type or not meta.name.endswith(":" + op_type):
                    continue
                totals[op_type] += event.duration_ps / 1e12
                counts[op_type] += 1
    return {k: (totals[k], counts[k]) for k in totals}


def report(case, seconds, ops, per, per_label, top, log=print):
    busy = sum(t for t, _ in ops.values())
    n_ops = sum(c for _, c in ops.values())
    log(f"\n== {case}: {seconds * 1e3:.1f} ms traced (tracing slows cheap ops), {per:,} {per_label}s; "
        f"{n_ops / per:.1f} kernel runs and {busy / per * 1e6:.1f} us of kernel time per {per_label}, "
        f"{busy / seconds:.0%} of wall time (on 2 threads it can pass 100%; what is missing is executor "
        f"and Python overhead, or waiting)")
    log(f"   {'op type':<32}{'ms':>9}{'of wall':>9}{'runs/' + per_label:>14}{'us/run':>9}")
    for op_type, (t, c) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]:
        log(f"   {op_type:<32}{t * 1e3:>9.2f}{t / seconds:>9.1%}{c / per:>14.2f}{t / c * 1e6:>9.2f}")


def cases(data):
    train, val, vocab = corpora.shakespeare_lines(data)
    model = bench_generation.default_model(vocab, seed=0)
    gen = generation_lib.get_generator(model, vocab)
    prompts64 = [line[:12] for line in val[:64]]

    def generate(prompts, length, xla=False):
        fn = gen.generate_fn_xla if xla else gen.generate_fn
        args = (tf.constant(prompts), tf.constant(length), tf.constant(0.0), tf.constant(0), tf.constant(1.0),
                tf.constant(0, tf.int64))
        return lambda: fn(*args)["lengths"].numpy()

    keras.utils.set_random_seed(0)
    small = ktg.build_model(vocab, units=128, layers=1)
    lines = train[:8000]
    ds = ktg.make_dataset(lines, vocab, batch_size=256, seed=0)
    steps = int(ds.reduce(0, lambda n, _: n + 1))
    cold = ktg.make_dataset(train, vocab, batch_size=64, seed=0, cache=False)
    cold_batches = int(cold.reduce(0, lambda n, _: n + 1))

    def one_pass():
        for _ in cold:
            pass

    return {
        "generate_1": (generate(["ROMEO:"], 300), 300, "token"),
        "generate_64": (generate(prompts64, 300), 300, "step"),
        "generate_64_xla": (generate(prompts64, 300, xla=True), 300, "step"),
        "train_lstm128_b256": (lambda: small.fit(ds, epochs=1, verbose=0), steps, "step"),
        "pipeline_cold_b64": (one_pass, cold_batches, "batch"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="tiny_shakespeare input.txt")
    parser.add_argument("--logdir", default=None, help="where the traces go (default: a temporary folder)")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--top", type=int, default=12, help="op types listed per case")
    args = parser.parse_args(argv)
    if not os.path.exists(args.data):
        parser.error(f"corpus not found: {args.data}")
    logdir = args.logdir or tempfile.mkdtemp(prefix="ktg-profile-")
    all_cases = cases(args.data)
    unknown = set(args.only or []) - set(all_cases)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {sorted(all_cases)}")
    for name, (fn, per, per_label) in all_cases.items():
        if args.only and name not in args.only:
            continue
        case_dir = os.path.join(logdir, name)
        seconds = trace(case_dir, fn)
        report(name, seconds, op_times(case_dir), per, per_label, args.top)
    print(f"\ntraces: {logdir} (tensorboard --logdir {logdir}, Profile tab)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
