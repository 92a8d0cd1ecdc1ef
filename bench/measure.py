"""Measurement helpers shared by the benchmark sections: timing, machine facts, FLOPs."""

import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def median_runs(fn, runs=5, warmup=1):
    """Calls `fn()` `warmup` times untimed, then `runs` times timed.

    `fn` returns a number of units (characters) or None. Returns a dict with
    the median seconds, every run's seconds and, when `fn` returned units,
    the median units per second.
    """
    for _ in range(warmup):
        fn()
    seconds, rates, units = [], [], None
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        units = fn()
        dt = time.perf_counter() - t0
        seconds.append(dt)
        if units is not None:
            rates.append(units / dt)
    out = {"seconds": statistics.median(seconds), "runs_seconds": seconds, "runs": len(seconds)}
    if rates:
        out.update(units=units, per_s=statistics.median(rates))
    return out


def steady_pass(batches, real_total, real_of):
    """Times one pass over `batches` (an iterable), from its first batch to its last.

    The clock starts when the first batch has arrived, so the one-off cost of
    creating the iterator is reported apart (`seconds_with_startup`) instead
    of inside the throughput. Only right for a dataset whose work is the same
    for every batch (the baseline's); a dataset whose first batch waits for
    more than its share of the work needs whole passes timed instead.
    `real_total` is the pass's real characters and `real_of(batch)` those of
    one batch (called after the clock stops, on the first batch, which the
    steady rate leaves out).
    """
    t0 = time.perf_counter()
    it = iter(batches)
    first = next(it)
    t1 = time.perf_counter()
    n = 1
    for _ in it:
        n += 1
    t2 = time.perf_counter()
    real_after_first = real_total - real_of(first)
    return {"batches": n, "seconds": t2 - t1, "seconds_with_startup": t2 - t0,
            "real_chars": real_after_first, "real_chars_per_s": real_after_first / (t2 - t1) if t2 > t1 else None,
            "real_chars_per_s_with_startup": real_total / (t2 - t0)}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    """`a / b`, or None when either is missing or `b` is 0."""
    if a is None or b is None or not b:
        return None
    return a / b


# -- machine and software -------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info():
    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_total_mb"] = round(psutil.virtual_memory().total / 2**20)
    except Exception:  # psutil is optional
        pass
    return info


def versions():
    import keras
    import numpy
    import tensorflow as tf

    import keras_textgen

    out = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
           "numpy": numpy.__version__, "keras_textgen": keras_textgen.__version__}
    try:
        import tf_keras

        out["tf_keras"] = tf_keras.__version__
    except Exception:
        out["tf_keras"] = None
    try:
        from importlib.metadata import version

        out["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:
        out["ai_edge_litert"] = None
    return out


def source_revision(root):
    """The code a run measured: `{"commit": sha, "dirty": uncommitted changes?}`, or Nones outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def today():
    return datetime.date.today().isoformat()


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(argv):
    return " ".join([sys.executable, "-m", "bench.run", *argv])


def peak_rss_mb():
    """This process's peak resident set size in MiB.

    Read from `VmHWM` in `/proc/self/status` (the high-water mark of this
    process's own address space). `getrusage(...).ru_maxrss` is not used for
    subprocesses: Linux carries the forking parent's RSS high-water mark across
    `exec`, so a child of a 1 GB benchmark process would report >= 1 GB.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_settings_child(module, settings):
    """Runs `python -m module --child --settings JSON` (the run's `settings`); returns its JSON object."""
    from bench import config

    return run_json_child(module, ["--child", "--settings", config.to_json(settings)], cwd=config.ROOT)


def configure_threads_as_cli():
    """`keras_textgen.configure_threads("auto")`, as `keras-textgen train` runs it: call it before any
    TensorFlow op. Returns the rows' label for the thread setting it left in force."""
    import keras_textgen as ktg

    applied = ktg.configure_threads("auto")
    return f"{applied} (configure_threads auto)" if applied else "TensorFlow default (configure_threads auto)"


def run_json_child(module, args, cwd, timeout=1800):
    """Runs `python -m module *args` and returns the JSON object on the last line of its output.

    For figures that need a process of their own: peak RSS, or TensorFlow
    thread pools, which are fixed once TensorFlow runs its first op.
    """
    cmd = [sys.executable, "-m", module, *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - t0
    result["command"] = " ".join(cmd[1:])
    return result


# -- FLOPs -------------------------------------------------------------------------
def lstm_forward_flops(input_dim, units):
    """Multiply-adds of one LSTM step, x2: four gates of `[input_dim + units] x units`."""
    return 2 * 4 * units * (input_dim + units)


def dense_forward_flops(units, vocab_size):
    return 2 * units * vocab_size


def training_flops_per_char(input_dim, units, layers, vocab_size):
    """Forward + backward (~3x forward) FLOPs per real character of a stacked LSTM + Dense model."""
    forward, width = 0, input_dim
    for _ in range(layers):
        forward += lstm_forward_flops(width, units)
        width = units
    forward += dense_forward_flops(units, vocab_size)
    return 3 * forward


def peak_matmul_flops(n=2048, runs=5):
    """Measured float32 matmul FLOP/s of an `n x n @ n x n` product (median of `runs`)."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])

    @tf.function
    def mm(a, b):
        return tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1])  # fetch a scalar, not n*n floats

    res = median_runs(lambda: float(mm(a, b)), runs=runs, warmup=2)
    flops = 2.0 * n ** 3
    return {"n": n, "seconds": res["seconds"], "runs_seconds": res["runs_seconds"],
            "flops_per_s": flops / res["seconds"]}


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def new_results(module, argv):
    """The head of a `python -m bench.<part>` run's results: its date, its command line, the machine and the code."""
    from bench import config

    argv = sys.argv[1:] if argv is None else argv
    return {"date": today(), "command": " ".join(["python", "-m", module, *argv]),
            "meta": {"machine": machine_info(), "code": source_revision(config.ROOT)}}


def results_stem(out_dir, name, results, kind, smoke):
    """`OUT_DIR/NAME`, by default `OUT_DIR/<date>-<kind>` (`-smoke` added for a smoke run)."""
    return os.path.join(out_dir, name or f"{results['date']}-{kind}" + ("-smoke" if smoke else ""))


def write_results(stem, results, markdown):
    """Writes `stem.json` and `stem.md` (`markdown(results)`), and prints the Markdown."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = markdown(results)
    with open(stem + ".md", "w") as f:
        f.write(text)
    print(text)
