"""Section 2: training throughput, real (non-padding) characters per second through `model.fit`.

Same architecture on both sides: one LSTM(128) layer + Dense. The baseline
runs at its batch size 8 (`baseline.measure_training_throughput`: a warm-up
fit, then a timed fit over a known slice of lines). The package trains whole
passes over a fixed set of lines with `make_dataset` defaults (cache,
shuffle, bucketing), repeated, with `steps_per_epoch` = one pass, so one
iterator serves the whole fit as in the baseline's; a pass always holds the
same real characters whatever the shuffle, so chars/s = real chars per epoch
/ epoch seconds, the median over the epochs after the first (which traces
the train function).

The package rows run twice: in the benchmark's own process, with
TensorFlow's default thread pools (what `model.fit` in a script gets), and
in a child process set up as `keras-textgen train` sets itself up
(`keras_textgen.configure_threads("auto")`: one intra-op thread on this
2-core CPU-only machine). The baseline keeps TensorFlow's defaults, which
are its faster setting here (one intra-op thread measured 9% slower for it).
"""

import argparse
import json
import statistics
import time

import keras

import keras_textgen as ktg
from keras_textgen import data as data_lib
from keras_textgen import steps as steps_lib

from bench import baseline as baseline_lib
from bench import corpora
from bench import config
from bench import measure
from bench.measure import ratio


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


def package_rate(texts, vocab, mode, batch_size, settings):
    s = settings
    keras.utils.set_random_seed(s.seed)
    ds = ktg.make_dataset(texts, vocab, mode=mode, batch_size=batch_size, seed=s.seed)
    # One iterator for the whole run, like the baseline's single timed fit: an epoch is one pass
    # (steps_per_epoch batches) of the repeated dataset. Keras re-creating the iterator of a finite
    # dataset at every epoch stalls about a second in some epochs here, which would dwarf 2 s epochs.
    steps = int(ds.reduce(0, lambda n, _: n + 1))
    # Steps per tf.function call as `keras-textgen train` picks them for an epoch of `steps`.
    steps_per_execution = steps_lib.steps_per_execution_for(steps)
    model = ktg.build_model(vocab, units=s.units, layers=1, steps_per_execution=steps_per_execution)
    ds = ktg.make_dataset(texts, vocab, mode=mode, batch_size=batch_size, seed=s.seed, repeat=True)
    real = data_lib.count_tokens(ds.take(steps))
    timer = EpochTimer()
    hist = model.fit(ds, epochs=1 + s.train_epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
                     callbacks=[timer])
    timed = timer.seconds[1:]
    row = {"impl": "package", "mode": mode, "batch_size": batch_size, "units": s.units, "layers": 1,
           "steps_per_execution": steps_per_execution,
           "vocab_size": vocab.size, "input_dim": vocab.size - 1,  # TokenEncoding drops the pad column
           "real_chars_per_epoch": real, "seconds_per_epoch": statistics.median(timed),
           "runs_seconds": timed, "warmup_epoch_seconds": timer.seconds[0],
           "real_chars_per_s": real / statistics.median(timed), "final_loss": float(hist.history["loss"][-1])}
    if mode == "lines":
        row["padding_fraction_bucketed"] = data_lib.padding_fraction(ds, max_batches=steps)
        row["padding_fraction_unbucketed"] = data_lib.padding_fraction(
            ktg.make_dataset(texts, vocab, mode=mode, batch_size=batch_size, seed=s.seed, bucket=False))
    else:
        row["padding_fraction_bucketed"] = row["padding_fraction_unbucketed"] = data_lib.padding_fraction(
            ds, max_batches=steps)
    return row


def baseline_rate(lines, settings):
    s = settings
    bl = baseline_lib.Baseline(lines, units=s.units, seed=s.seed)
    runs = [baseline_lib.measure_training_throughput(bl, lines, steps=s.baseline_train_steps,
                                                     warmup_steps=s.baseline_train_warmup)
            for _ in range(s.baseline_train_runs)]
    return {"impl": "baseline", "mode": "lines", "batch_size": bl.batch_size, "units": s.units, "layers": 1,
            "vocab_size": bl.vocab_size, "input_dim": bl.vocab_size,  # one-hot including the pad column
            "steps_per_run": s.baseline_train_steps,
            "real_chars_per_run": runs[0]["real_chars"],
            "seconds_per_run": statistics.median(r["seconds"] for r in runs),
            "runs_seconds": [r["seconds"] for r in runs],
            "real_chars_per_s": statistics.median(r["real_chars_per_s"] for r in runs),
            "padding_fraction_bucketed": None,
            "padding_fraction_unbucketed": 1.0 - runs[0]["real_chars"] / runs[0]["positions"],
            "final_loss": runs[-1]["loss"]}


def package_rows(settings, threads):
    """The package's rows: lines mode at every batch size, then chunks mode at batch 64."""
    s = settings
    train, _, vocab = corpora.shakespeare_lines(s.data)
    lines = train[: s.train_lines]
    rows = [package_rate(lines, vocab, "lines", bs, s) for bs in s.batch_sizes]
    text, _, chunk_vocab = corpora.shakespeare_chunks(s.data)
    rows.append(package_rate([corpora.first_chars(text, s.train_chunk_chars)], chunk_vocab, "chunks", 64, s))
    for row in rows:
        row["threads"] = threads
    return rows


def package_rows_in_child(settings):
    """`package_rows` in a fresh process that first calls `keras_textgen.configure_threads("auto")`."""
    return measure.run_settings_child("bench.training", settings)["rows"]


def run(settings, log=print):
    s = settings
    train, _, vocab = corpora.shakespeare_lines(s.data)
    base = baseline_rate(train[: s.train_lines], s)
    log(f"  baseline b=8: {base['real_chars_per_s']:,.0f} chars/s, padding {base['padding_fraction_unbucketed']:.1%}")
    rows = [base]
    for package in (lambda: package_rows(s, "TensorFlow default"), lambda: package_rows_in_child(s)):
        for row in package():
            row["ratio_vs_baseline"] = ratio(row["real_chars_per_s"], base["real_chars_per_s"])
            rows.append(row)
            padding = (f", padding {row['padding_fraction_bucketed']:.1%} bucketed / "
                       f"{row['padding_fraction_unbucketed']:.1%} not" if row["mode"] == "lines" else "")
            log(f"  package {row['mode']} b={row['batch_size']} threads {row['threads']}: "
                f"{row['real_chars_per_s']:,.0f} chars/s (x{row['ratio_vs_baseline']:.1f}){padding}")

    lines_rows = [r for r in rows if r["impl"] == "package" and r["mode"] == "lines"]
    default = next((r for r in lines_rows if r["batch_size"] == 64), lines_rows[0])
    best = max(lines_rows, key=lambda r: r["real_chars_per_s"])
    return {"rows": rows,
            "baseline_chars_per_s": base["real_chars_per_s"],
            "default_batch_size": default["batch_size"], "default_chars_per_s": default["real_chars_per_s"],
            "best_batch_size": best["batch_size"], "best_threads": best["threads"],
            "best_chars_per_s": best["real_chars_per_s"],
            "ratio_default": ratio(default["real_chars_per_s"], base["real_chars_per_s"]),
            "ratio_best": ratio(best["real_chars_per_s"], base["real_chars_per_s"]),
            "padding_bucketed_max": max(r["padding_fraction_bucketed"] for r in lines_rows),
            "padding_unbucketed_default": default["padding_fraction_unbucketed"],
            "baseline_padding": base["padding_fraction_unbucketed"]}


def child(argv=None):
    p = argparse.ArgumentParser(description="the package's training rows in a process of their own (bench.run)")
    p.add_argument("--child", action="store_true", required=True)
    p.add_argument("--settings", required=True, help="the run's Settings as JSON")
    a = p.parse_args(argv)
    threads = measure.configure_threads_as_cli()  # first, before any TensorFlow op
    print(json.dumps({"rows": package_rows(config.from_json(a.settings), threads=threads)}))


if __name__ == "__main__":
    child()
