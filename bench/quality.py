"""Section 3: quality at equal time: validation bits/char after the same wall-clock training budget.

Baseline: the notebook model (LSTM 128, batch 8). Package: `build_model(vocab)`
with its defaults, batch 64, twice: in lines mode, and in chunks mode (the
CLI's default for Tiny Shakespeare). Each side runs with its faster thread
setting, as in the training section: the baseline with TensorFlow's
defaults, the package in a child process set up as `keras-textgen train`
sets itself up (`keras_textgen.configure_threads("auto")`). All three train on the same training
lines and are scored on the same validation lines. Each trains once for
`quality_seconds` of wall clock (tracing included); at `quality_checkpoints`
points the clock is paused and the validation bits/char of a subset of
validation lines is measured for the curve. The final figure uses every
validation line, over real targets only (no padding).

The targets are the same on every row: each validation line's characters
and its end (EOS, or the newline after it in chunks mode), n + 1 per line
of n characters. Lines mode scores each line alone, from EOS. Chunks mode
trains on the training lines joined in file order (every 10th line is held
out) and scores each validation line in a window of the whole text that
ends with it, so the text before the line (up to `SEQ_LEN` tokens, the
training windows' length) is its context: what a model of running text can
use and a model of single lines cannot.
"""

import argparse
import json
import math
import time

import keras
import numpy as np
import tensorflow as tf
import tf_keras

import keras_textgen as ktg
from keras_textgen import model as model_lib
from keras_textgen import vocab as vocab_lib

from bench import baseline as baseline_lib
from bench import config
from bench import corpora
from bench import measure

LN2 = math.log(2.0)
SEQ_LEN = 100  # chunks mode: training windows and the scoring windows' length


class _Clock:
    """Stops `fit` after `budget` training seconds; evaluates at checkpoints with the clock paused."""

    def _setup(self, budget, checkpoints, evaluate):
        self.budget = float(budget)
        self.marks = [budget * (i + 1) / checkpoints for i in range(checkpoints)]
        self.evaluate = evaluate
        self.curve = []       # (training seconds, validation bits/char)
        self.steps = 0
        self.paused = 0.0
        self.elapsed = 0.0

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.elapsed = time.perf_counter() - self._t0 - self.paused
        if self.marks and self.elapsed >= self.marks[0]:
            while self.marks and self.elapsed >= self.marks[0]:
                self.marks.pop(0)
            t = time.perf_counter()
            self.curve.append((self.elapsed, float(self.evaluate())))
            self.paused += time.perf_counter() - t
        if self.elapsed >= self.budget:
            self.model.stop_training = True


class KerasClock(_Clock, keras.callbacks.Callback):
    def __init__(self, *args):
        keras.callbacks.Callback.__init__(self)
        self._setup(*args)


class TfKerasClock(_Clock, tf_keras.callbacks.Callback):
    def __init__(self, *args):
        tf_keras.callbacks.Callback.__init__(self)
        self._setup(*args)


def package_bits_per_char(model, dataset):
    """Mean -log2 p(target) over real target positions (target != pad), token-weighted."""
    nats, _ = model_lib.per_token_loss(model, dataset)
    return nats / LN2


def run_baseline(train, val, curve_val, settings):
    s = settings
    bl = baseline_lib.Baseline(train, units=s.units, seed=s.seed)
    clock = TfKerasClock(s.quality_seconds, s.quality_checkpoints,
                         lambda: bl.evaluate_bits_per_char(curve_val))
    t0 = time.perf_counter()
    bl.fit(train, epochs=1, steps_per_epoch=10**9, callbacks=[clock])
    wall = time.perf_counter() - t0
    bpc = bl.evaluate_bits_per_char(val)
    bpc_no_first = bl.evaluate_bits_per_char(val, include_first_char=False)
    return {"impl": "baseline", "model": f"LSTM({s.units}) x1, one-hot+Masking (unmasked), batch 8",
            "params": int(bl.model.count_params()), "batch_size": bl.batch_size,
            "train_seconds": clock.elapsed, "wall_seconds_with_evaluations": wall, "steps": clock.steps,
            "val_bits_per_char": bpc, "val_bits_per_char_excluding_first_char": bpc_no_first,
            "curve": clock.curve}


def context_windows(document, count, vocab, seq_len=SEQ_LEN):
    """The first `count` validation lines of `document`, each scored in context.

    Args:
        document: `(line, is_validation)` pairs in file order.
        count: how many validation lines to score.
        vocab: the chunks-mode vocabulary.
        seq_len: the window length.

    Returns:
        `(x, y)`, int32 `[count, seq_len]`: for each line, the window of
        the document (`[EOS] + ids` of the lines joined by newlines) that
        ends with its last target; `y` keeps only that line's targets (its
        characters and the newline after it) and is pad (which
        `per_token_loss` skips) elsewhere. Right-padded near the start.
    """
    ids = np.concatenate([[vocab_lib.EOS_ID], vocab.encode("\n".join(line for line, _ in document)).numpy()])
    x = np.zeros([count, seq_len], np.int32)
    y = np.zeros([count, seq_len], np.int32)
    row, start = 0, 1  # `start`: the position of the line's first character in `ids`
    for line, is_validation in document:
        if row == count:
            break
        end = start + len(line)  # the newline after the line
        if is_validation:
            last = min(end, len(ids) - 1)  # the last line has no newline after it
            lo = max(0, last - seq_len)
            x[row, : last - lo] = ids[lo:last]
            y[row, : last - lo] = ids[lo + 1: last + 1]
            y[row, : max(0, start - lo - 1)] = vocab_lib.PAD_ID  # context, not scored
            row += 1
        start = end + 1
    return x[:row], y[:row]


def _train_for(model, train_ds, curve_ds, settings):
    """Trains for the budget; returns `(clock, wall seconds with the curve's evaluations)`."""
    s = settings
    clock = KerasClock(s.quality_seconds, s.quality_checkpoints,
                       lambda: package_bits_per_char(model, curve_ds))
    t0 = time.perf_counter()
    model.fit(train_ds, epochs=1, steps_per_epoch=10**9, verbose=0, shuffle=False, callbacks=[clock])
    return clock, time.perf_counter() - t0


def _row(model, clock, wall, val_ds, description, batch_size=64):
    layers = model_lib.recurrent_layers(model)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    built = f"build_model(vocab, dropout={rates[0]})" if rates else "build_model(vocab) defaults"
    return {"impl": "package",
            "model": f"{built}: LSTM({layers[0].units}) x{len(layers)}, batch {batch_size}, {description}",
            "params": int(model.count_params()), "batch_size": batch_size,
            "train_seconds": clock.elapsed, "wall_seconds_with_evaluations": wall, "steps": clock.steps,
            "val_bits_per_char": package_bits_per_char(model, val_ds), "curve": clock.curve}


def run_package(train, val, curve_val, vocab, settings):
    s = settings
    keras.utils.set_random_seed(s.seed)
    model = ktg.build_model(vocab)  # the package defaults
    train_ds = ktg.make_dataset(train, vocab, batch_size=64, repeat=True, seed=s.seed)
    val_ds = ktg.make_dataset(val, vocab, batch_size=64, shuffle=False)
    curve_ds = ktg.make_dataset(curve_val, vocab, batch_size=64, shuffle=False)
    clock, wall = _train_for(model, train_ds, curve_ds, s)
    row = _row(model, clock, wall, val_ds, "bucketed lines")
    row["mode"] = "lines"
    row["val_bits_per_char_model_evaluate"] = model.evaluate(val_ds, verbose=0, return_dict=True)["loss"] / LN2
    return row


def run_package_chunks(train, document, val_count, curve_count, settings, batch_size=64, dropout=0.0):
    """The package in chunks mode: the training lines joined in file order; validation lines in context.

    `batch_size` and `dropout` (`build_model`'s) are for the variants in bench/HISTORY.md; `make bench` runs the defaults.
    """
    s = settings
    text = "\n".join(train)
    vocab = ktg.Vocabulary.adapt([text])
    keras.utils.set_random_seed(s.seed)
    model = ktg.build_model(vocab, dropout=dropout)
    train_ds = ktg.make_dataset([text], vocab, mode="chunks", batch_size=batch_size, seq_len=SEQ_LEN, repeat=True,
                                seed=s.seed)

    x, y = context_windows(document, val_count, vocab)  # the curve's lines are the first `curve_count`

    def windows(count):
        return tf.data.Dataset.from_tensor_slices((x[:count], y[:count])).batch(64)

    clock, wall = _train_for(model, train_ds, windows(curve_count), s)
    described = f"chunks of {SEQ_LEN}, lines scored in context" + (f", dropout {dropout}" if dropout else "")
    row = _row(model, clock, wall, windows(val_count), described, batch_size)
    row["mode"] = "chunks"
    return row


def plot(rows, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for row in rows:
        xs, ys = zip(*row["curve"]) if row["curve"] else ((), ())
        name = row["impl"] + (f", {row['mode']} mode" if row.get("mode") else "")
        line, = ax.plot(xs, ys, marker="o", label=f"{name}: {row['model'].split(': ', 1)[-1]}")
        ax.plot([row["train_seconds"]], [row["val_bits_per_char"]], marker="*", markersize=12, linestyle="none",
                color=line.get_color())
    ax.plot([], [], marker="*", markersize=12, linestyle="none", color="gray", label="final, all validation lines")
    ax.set_xlabel("training seconds (wall clock, evaluation pauses excluded)")
    ax.set_ylabel("validation bits / char (curve: a subset of lines)")
    ax.set_title("Quality at equal time: tiny Shakespeare lines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(png_path, format="png")
    plt.close(fig)


def texts(settings):
    """`(train, val, curve_val, vocab)`: the lines both sides train and are scored on."""
    s = settings
    train, val, vocab = corpora.shakespeare_lines(s.data)
    if s.smoke:
        train = train[: s.train_lines]
    val = val[: s.quality_val_lines] if s.quality_val_lines else val
    return train, val, val[: s.quality_curve_val_lines], vocab


def package_rows(settings):
    """The package's rows: lines mode, then chunks mode."""
    train, val, curve_val, vocab = texts(settings)
    document = corpora.shakespeare_document(settings.data)
    return [run_package(train, val, curve_val, vocab, settings),
            run_package_chunks(train, document, len(val), len(curve_val), settings)]


def run(settings, png_path, log=print):
    s = settings
    train, val, curve_val, _ = texts(s)
    base = run_baseline(train, val, curve_val, s)
    base["threads"] = "TensorFlow default"
    log(f"  baseline: {base['val_bits_per_char']:.3f} bits/char after {base['train_seconds']:.0f}s, "
        f"{base['steps']} steps")
    rows = [base] + measure.run_settings_child("bench.quality", s)["rows"]
    for row in rows[1:]:
        log(f"  package, {row['mode']} mode: {row['val_bits_per_char']:.3f} bits/char after "
            f"{row['train_seconds']:.0f}s, {row['steps']} steps")
    plot(rows, png_path)
    best = min(rows[1:], key=lambda r: r["val_bits_per_char"])
    return {"rows": rows, "budget_seconds": s.quality_seconds,
            "train_lines": len(train), "val_lines": len(val), "curve_val_lines": len(curve_val),
            "baseline_bits_per_char": base["val_bits_per_char"],
            "package_bits_per_char": best["val_bits_per_char"], "package_mode": best["mode"],
            "improvement_bits_per_char": base["val_bits_per_char"] - best["val_bits_per_char"],
            "plot": png_path}


def main(argv=None):
    """`python -m bench.quality --seconds 1200`: the package's side alone, for a longer curve than `make bench`'s."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--seconds", type=float, default=1200.0, help="training budget (wall clock)")
    p.add_argument("--checkpoints", type=int, default=8, help="curve points, each on every validation line")
    p.add_argument("--mode", choices=("lines", "chunks"), default="lines", help="the package's data mode")
    p.add_argument("--batch-size", type=int, default=64, help="(chunks mode) training batch size")
    p.add_argument("--dropout", type=float, default=0.0, help="(chunks mode) build_model's dropout")
    p.add_argument("--child", action="store_true", help="(bench.run) both package rows, as JSON")
    p.add_argument("--settings", help="(with --child) the run's Settings as JSON")
    args = p.parse_args(argv)
    if args.mode == "lines" and (args.batch_size != p.get_default("batch_size") or args.dropout):
        p.error("--batch-size and --dropout apply to --mode chunks")
    threads = measure.configure_threads_as_cli()  # first, before any TensorFlow op
    if args.child:
        rows = package_rows(config.from_json(args.settings))
        print(json.dumps({"rows": [{**row, "threads": threads} for row in rows]}))
        return
    s = config.Settings(quality_seconds=args.seconds, quality_checkpoints=args.checkpoints)
    train, val, _, vocab = texts(s)
    if args.mode == "lines":
        row = run_package(train, val, val, vocab, s)
    else:
        row = run_package_chunks(train, corpora.shakespeare_document(s.data), len(val), len(val), s,
                                 batch_size=args.batch_size, dropout=args.dropout)
    for seconds, bpc in row["curve"]:
        print(f"{seconds:7.0f} s  {bpc:.3f} bits/char")
    print(json.dumps({k: v for k, v in row.items() if k != "curve"} | {"threads": threads}))


if __name__ == "__main__":
    main()
