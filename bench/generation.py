"""Section 4: generation speed, characters per second, greedy decoding.

Baseline: the notebook's loop (re-runs the whole prefix, eager `model(x)`),
1 prompt x `gen_baseline_length` characters (EOS suppressed by the baseline's
own `stop_at_eos=False`); it has no batched mode, so its 64-prompt figure is
the single-prompt rate (it generates one prompt after the other).

Package: the default model (`build_model(vocab)`), untrained: speed does not
depend on the weights, and the EOS logit's bias is pushed to -1e4 so every
prompt runs to the full length (greedy decoding of an untrained model would
otherwise stop at random). The generated characters are still counted from
the outputs (`lengths`, or the text) and divided by the time. Paths: the
Python API (`keras_textgen.generate`, and the cached `generate_fn` without
Python overhead), each also with `jit_compile=True` (XLA; the first call,
which compiles, is timed apart), the SavedModel `serving_default` signature, and the TFLite
file through `keras_textgen.lite.LiteGenerator` plus the raw `step` latency.
Export rows report "not available" when `keras_textgen.export` / `.lite`
cannot be imported.
"""

import importlib
import os
import shutil
import statistics
import tempfile
import time
import traceback

import keras
import numpy as np
import tensorflow as tf

import keras_textgen as ktg
from keras_textgen import generation as generation_lib
from keras_textgen import vocab as vocab_lib

from bench import baseline as baseline_lib
from bench import corpora
from bench.measure import median_runs
from bench.measure import ratio

NOT_AVAILABLE = "not available"


def optional_module(name):
    try:
        return importlib.import_module(name), None
    except ImportError as e:
        return None, f"{NOT_AVAILABLE} ({name}: {e})"


def suppress_eos(model):
    """Pushes the EOS logit's bias down so greedy decoding never ends early."""
    dense = model.get_layer("logits")
    bias = dense.bias.numpy()
    bias[vocab_lib.EOS_ID] = -1e4
    dense.bias.assign(bias)


def default_model(vocab, seed, **kwargs):
    keras.utils.set_random_seed(seed)
    model = ktg.build_model(vocab, compile=False, **kwargs)
    suppress_eos(model)
    return model


def _row(path, prompts, length, res, **extra):
    return {"path": path, "prompts": prompts, "max_length": length, "chars_per_run": res.get("units"),
            "seconds": res.get("seconds"), "runs_seconds": res.get("runs_seconds"),
            "chars_per_s": res.get("per_s"), **extra}


def _unavailable(path, prompts, length, status):
    return {"path": path, "prompts": prompts, "max_length": length, "chars_per_s": None, "status": status}


def time_generate_fn(gen, prompts, length, runs, jit_compile=False):
    """Times the cached tf.function; the first (warm-up) call's time, tracing or compiling, is `first_call_s`."""
    fn = gen.generate_fn_xla if jit_compile else gen.generate_fn
    args = (tf.constant(prompts), tf.constant(length, tf.int32), tf.constant(0.0), tf.constant(0, tf.int32),
            tf.constant(1.0), tf.constant(0, tf.int64))
    t0 = time.perf_counter()
    fn(*args)
    first = time.perf_counter() - t0
    return {**median_runs(lambda: int(tf.reduce_sum(fn(*args)["lengths"])), runs=runs, warmup=0),
            "first_call_s": first}


def time_python_api(model, vocab, prompts, length, runs, jit_compile=False):
    def once():
        out = ktg.generate(model, vocab, prompts, max_length=length, temperature=0.0, seed=0,
                           jit_compile=jit_compile)
        return sum(len(t) for t in out)
    return median_runs(once, runs=runs)


def time_saved_model(serve, prompts, length, runs):
    kwargs = dict(prompt=tf.constant(prompts), max_length=tf.constant(length, tf.int32),
                  temperature=tf.constant(0.0), top_k=tf.constant(0, tf.int32), top_p=tf.constant(1.0),
                  seed=tf.constant(0, tf.int64))
    return median_runs(lambda: int(tf.reduce_sum(serve(**kwargs)["lengths"])), runs=runs)


def time_lite_generate(lite_gen, prompts, length, runs):
    def once():
        out = lite_gen.generate(prompts, max_length=length, temperature=0.0, seed=0)
        return sum(len(t) for t in out)
    return median_runs(once, runs=runs)


def step_latency(call, calls):
    """Median / p90 microseconds of `calls` individually timed calls (after 50 warm-up calls)."""
    for _ in range(50):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return {"median_us": times[len(times) // 2] / 1e3, "p90_us": times[int(len(times) * 0.9)] / 1e3,
            "calls": calls}


def lite_step_rows(lite_gen, label, calls):
    states = lite_gen.initial_states(1)
    token = np.array([[vocab_lib.EOS_ID]], np.int32)
    raw = lite_gen.interpreter.get_signature_runner("step")
    rows = [{"path": f"{label} step, signature runner (1 token)", **step_latency(lambda: raw(token=token, **states),
                                                                                  calls)},
            {"path": f"{label} LiteGenerator.step (1 token)",
             **step_latency(lambda: lite_gen.step([vocab_lib.EOS_ID], states), calls)}]
    return rows


def run(settings, log=print):
    s = settings
    train, val, vocab = corpora.shakespeare_lines(s.data)
    if s.smoke:
        train = train[: s.train_lines]
    single = "ROMEO:"
    batch_prompts = [line[:12] for line in val[: s.gen_batch]]
    rows, step_rows, sizes = [], [], {}

    # -- baseline ------------------------------------------------------------
    bl = baseline_lib.Baseline(train, units=s.units, seed=s.seed)
    runs = [baseline_lib.measure_generation_speed(bl, single, s.gen_baseline_length, call="model")
            for _ in range(s.gen_baseline_runs)]
    base_rate = statistics.median(r["chars_per_s"] for r in runs)
    rows.append({"impl": "baseline", "path": "notebook loop (prefix re-run, eager model(x))", "prompts": 1,
                 "max_length": s.gen_baseline_length, "chars_per_run": runs[0]["chars"],
                 "seconds": statistics.median(r["seconds"] for r in runs),
                 "runs_seconds": [r["seconds"] for r in runs], "chars_per_s": base_rate})
    rows.append({"impl": "baseline", "path": "notebook loop, prompts one after the other (= single-prompt rate)",
                 "prompts": s.gen_batch, "max_length": s.gen_batch_length, "chars_per_s": base_rate,
                 "estimated": True})

    # -- package, Python API ---------------------------------------------------
    model = default_model(vocab, s.seed)
    gen = generation_lib.get_generator(model, vocab)
    for prompts, length in (([single], s.gen_single_length), (batch_prompts, s.gen_batch_length)):
        for jit, label in ((False, ""), (True, ", jit_compile=True (XLA)")):
            res = time_generate_fn(gen, prompts, length, s.gen_runs, jit_compile=jit)
            rows.append({"impl": "package", **_row(f"Python generate_fn (cached tf.function){label}", len(prompts),
                                                   length, res), "first_call_s": res["first_call_s"]})
            res = time_python_api(model, vocab, prompts, length, s.gen_runs, jit_compile=jit)
            rows.append({"impl": "package", **_row(f"Python keras_textgen.generate{label}", len(prompts), length,
                                                   res)})
    small = default_model(vocab, s.seed, units=s.units, layers=1)
    res = time_generate_fn(generation_lib.get_generator(small, vocab), [single], s.gen_single_length, s.gen_runs)
    rows.append({"impl": "package", **_row(f"Python generate_fn, LSTM({s.units}) x1 (baseline architecture)", 1,
                                           s.gen_single_length, res)})

    # -- package, exports ------------------------------------------------------
    export, export_status = optional_module("keras_textgen.export")
    lite, lite_status = optional_module("keras_textgen.lite")
    tmp = tempfile.mkdtemp(prefix="bench_export_")
    try:
        cases = (([single], s.gen_single_length), (batch_prompts, s.gen_batch_length))
        if export is None:
            rows += [{"impl": "package", **_unavailable("SavedModel serving_default", len(p), n, export_status)}
                     for p, n in cases]
        else:
            try:
                path = export.export_saved_model(model, vocab, base_dir=tmp, name="bench", version=1)
                sizes["SavedModel (folder)"] = sum(os.path.getsize(os.path.join(d, f))
                                                   for d, _, files in os.walk(path) for f in files)
                serve = tf.saved_model.load(path).signatures["serving_default"]
                for prompts, length in cases:
                    res = time_saved_model(serve, prompts, length, s.gen_runs)
                    rows.append({"impl": "package", **_row("SavedModel serving_default", len(prompts), length, res)})
            except Exception as e:  # an export bug must not hide the other figures
                rows += [{"impl": "package", **_unavailable("SavedModel serving_default", len(p), n,
                                                            f"error: {type(e).__name__}: {e}")} for p, n in cases]
                log(traceback.format_exc())
        if export is None or lite is None:
            status = export_status or lite_status
            rows += [{"impl": "package", **_unavailable("TFLite float32 LiteGenerator.generate", len(p), n, status)}
                     for p, n in cases]
            step_rows.append({"path": "TFLite float32 step, signature runner (1 token)", "median_us": None,
                              "status": status})
        else:
            for quantize, label in (("none", "TFLite float32"), ("dynamic", "TFLite int8 weights"),
                                    ("float16", "TFLite float16 weights")):
                try:
                    path = export.export_tflite(model, vocab, base_dir=tmp, name="bench", quantize=quantize)
                    sizes[label] = os.path.getsize(path)
                    lite_gen = lite.LiteGenerator(path)
                    step_rows += lite_step_rows(lite_gen, label, s.tflite_step_calls)
                    if quantize == "none":
                        for prompts, length in cases:
                            res = time_lite_generate(lite_gen, prompts, length, s.gen_runs)
                            rows.append({"impl": "package", **_row(f"{label} LiteGenerator.generate", len(prompts),
                                                                   length, res)})
                except Exception as e:
                    step_rows.append({"path": f"{label} step, signature runner (1 token)", "median_us": None,
                                      "status": f"error: {type(e).__name__}: {e}"})
                    log(traceback.format_exc())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for row in rows:
        row["ratio_vs_baseline"] = ratio(row.get("chars_per_s"), base_rate) if row["impl"] == "package" else None
        if row.get("chars_per_s") is not None:
            log(f"  {row['impl']} {row['path']} {row['prompts']}x{row['max_length']}: "
                f"{row['chars_per_s']:,.0f} chars/s")
    for row in step_rows:
        if row.get("median_us") is not None:
            log(f"  {row['path']}: median {row['median_us']:.1f} us")

    def pick(path, prompts):
        return next((r for r in rows if r["path"] == path and r["prompts"] == prompts), {})

    single_fn = pick("Python generate_fn (cached tf.function)", 1)
    batch_fn = pick("Python generate_fn (cached tf.function)", s.gen_batch)
    xla = "Python generate_fn (cached tf.function), jit_compile=True (XLA)"
    single_xla, batch_xla = pick(xla, 1), pick(xla, s.gen_batch)
    batch_rates = [r["chars_per_s"] for r in rows if r["impl"] == "package" and r["prompts"] == s.gen_batch
                   and r.get("chars_per_s") is not None]
    tflite_step = next((r for r in step_rows if r["path"] == "TFLite float32 step, signature runner (1 token)"), {})
    for label, size in sizes.items():
        log(f"  artifact size {label}: {size:,} bytes")
    return {"rows": rows, "tflite_step": step_rows, "artifact_bytes": sizes,
            "baseline_single_chars_per_s": base_rate,
            "package_single_chars_per_s": single_fn.get("chars_per_s"),
            "single_ratio": ratio(single_fn.get("chars_per_s"), base_rate),
            "package_batch_chars_per_s": batch_fn.get("chars_per_s"),
            "package_single_xla_chars_per_s": single_xla.get("chars_per_s"),
            "single_xla_ratio": ratio(single_xla.get("chars_per_s"), base_rate),
            "package_batch_xla_chars_per_s": batch_xla.get("chars_per_s"),
            "xla_compile_s": {"single": single_xla.get("first_call_s"), "batch": batch_xla.get("first_call_s")},
            "best_batch_chars_per_s": max(batch_rates) if batch_rates else None,
            "tflite_step_median_us": tflite_step.get("median_us"),
            "export_available": export is not None, "lite_available": lite is not None,
            "note": "greedy decoding; default model untrained with EOS suppressed so every prompt runs to full length"}
