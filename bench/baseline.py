"""Benchmark BASELINE: faithful reimplementation of the classic "char-level LSTM
on AG News titles" lesson notebook, written against the legacy Keras 2 package
(``tf_keras``) and ``tf.data`` + ``tf.py_function``.

It is deliberately NOT optimised: it is the reference point that ``keras_textgen``
is measured against.  Its known weaknesses are kept on purpose and documented:

* The tokenizer runs in Python inside ``tf.py_function`` (GIL-bound, no graph).
* ``pad_sequences`` PRE-pads with id 0 to the longest line of each batch.
* One-hot inputs *and* one-hot targets are materialised, shape [B, T, vocab].
* ``Masking`` does not mask anything: one-hot of pad id 0 is ``[1, 0, ..., 0]``,
  which is not all-zeros, so every padded position is fed to the LSTM and the
  training loss is averaged over padded positions too.
* Generation re-runs the whole prefix through the model for every new char
  (O(n^2) work).

Pitfalls on current TensorFlow (2.21 / tf_keras 2.21) and the workarounds used:

* Outputs of ``tf.py_function`` have *unknown rank*.  Without ``set_shape``,
  ``fit`` fails inside the LSTM with::

      TypeError: Exception encountered when calling layer 'lstm' (type LSTM).
      'NoneType' object is not subscriptable
      (inputs=tf.Tensor(shape=<unknown>, dtype=float32))

  so ``set_shape([None, None, vocab])`` is applied to both outputs.
* ``Tokenizer.sequences_to_texts`` joins tokens with spaces even with
  ``char_level=True`` ("h e l l o"); we decode with ``''.join`` instead.
* Chars not seen when fitting the tokenizer are silently DROPPED by
  ``texts_to_sequences`` (no ``oov_token``), for validation lines too.

Bits/char accounting (``evaluate_bits_per_char`` / ``real_chars``)
-----------------------------------------------------------------
A position is *real* iff its TARGET id is not 0, i.e. the target is a real char
or EOS.  Padding targets are excluded, so the number is comparable with a
properly masked model.  Because of PRE-padding + shift-left, a line of length L
that is shorter than the longest line in its batch contributes L+1 real targets
(its first char is predicted from a pad input, i.e. with no context, then the
remaining L-1 chars, then EOS), whereas the longest line(s) of each batch
contribute only L (their first char is the input at t=0 and never a target).
Pass ``include_first_char=False`` to count only positions whose INPUT is also
real (exactly L per line: chars 2..L plus EOS), which is batch-independent.
"""

from __future__ import annotations

import argparse
import time
from typing import Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from bench import config
from bench.measure import steady_pass

__all__ = [
    "Baseline",
    "TimeLimit",
    "load_lines",
    "measure_pipeline_throughput",
    "measure_training_throughput",
    "measure_generation_speed",
]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def load_lines(path: str, val_fraction: float = 0.1):
    """Non-empty lines of a text file, split contiguously into (train, val)."""
    with open(path, encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f]
    lines = [ln for ln in lines if ln.strip()]
    n_val = int(round(len(lines) * val_fraction))
    return lines[: len(lines) - n_val], lines[len(lines) - n_val:]


class TimeLimit(tf_keras.callbacks.Callback):
    """Stop ``fit`` after ``seconds`` of wall time; records steps actually run."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.steps = 0
        self.elapsed = 0.0
        self._t0 = None

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.elapsed = time.perf_counter() - self._t0
        if self.elapsed >= self.seconds:
            self.model.stop_training = True


# --------------------------------------------------------------------------- #
# the baseline
# --------------------------------------------------------------------------- #
class Baseline:
    """Notebook-faithful char-level LSTM (tf_keras + tf.py_function pipeline)."""

    def __init__(self, train_lines: Sequence[str], batch_size: int = 8,
                 units: int = 128, seed: int = 0):
        self.batch_size = int(batch_size)
        self.units = int(units)
        self.seed = int(seed)
        tf_keras.utils.set_random_seed(self.seed)

        # Keras 2 char tokenizer. With char_level=True the `filters` argument
        # is not applied, so punctuation/space are kept. Ids start at 1.
        self.tokenizer = tf_keras.preprocessing.text.Tokenizer(
            char_level=True, lower=False)
        self.tokenizer.fit_on_texts(list(train_lines))
        self.eos_id = len(self.tokenizer.word_index) + 1   # <eos> appended
        self.vocab_size = self.eos_id + 1                  # id 0 = padding

        self.model = self.build_model()

    def _forward(self, x):
        """Graph-compiled forward pass used only for evaluation (one trace for
        all [B, T]); numerically identical to ``model(x)``, just not eager."""
        if getattr(self, "_fwd_model", None) is not self.model:
            m = self.model
            self._fwd = tf.function(lambda t: m(t, training=False),
                                    input_signature=[tf.TensorSpec([None, None, self.vocab_size], tf.float32)])
            self._fwd_model = m
        return self._fwd(x)

    # ---------------------------------------------------------------- data --
    def _ids(self, texts: List[str]):
        """texts -> (inputs, targets) int arrays [B, T] exactly as the notebook."""
        z = self.tokenizer.texts_to_sequences(texts)
        z = tf_keras.preprocessing.sequence.pad_sequences(z)  # PRE-pad with 0
        y = np.concatenate(
            [z[:, 1:], np.full((len(z), 1), self.eos_id, dtype=z.dtype)], axis=1)
        return z, y

    def _batch_fn(self, x):
        # Runs eagerly inside tf.py_function: x is a tf.string EagerTensor.
        texts = [t.decode("utf-8") for t in x.numpy()]
        z, y = self._ids(texts)
        return (tf_keras.utils.to_categorical(z, self.vocab_size),   # float32
                tf_keras.utils.to_categorical(y, self.vocab_size))

    def _map_fn(self, x):
        a, b = tf.py_function(self._batch_fn, inp=[x], Tout=(tf.float32, tf.float32))
        # The notebook did not need this on older TF. On current TF the
        # py_function outputs have unknown rank and model.fit fails inside the
        # LSTM ("'NoneType' object is not subscriptable"), so the shape has to
        # be declared for the baseline to run at all.
        a.set_shape([None, None, self.vocab_size])
        b.set_shape([None, None, self.vocab_size])
        return a, b

    def dataset(self, lines: Sequence[str]) -> tf.data.Dataset:
        """``from_tensor_slices(lines).batch(B).map(py_function)`` (no shuffle,
        no prefetch, no parallel map -- as in the notebook)."""
        return (tf.data.Dataset.from_tensor_slices(list(lines))
                .batch(self.batch_size)
                .map(self._map_fn))

    # --------------------------------------------------------------- model --
    def build_model(self) -> tf_keras.Sequential:
        model = tf_keras.Sequential([
            # NOTE: does not actually mask. Pad id 0 is one-hot encoded to
            # [1, 0, ..., 0] which is not the mask_value (all 0.0), so padded
            # steps run through the LSTM and count in the loss. Kept faithful.
            tf_keras.layers.Masking(input_shape=(None, self.vocab_size)),
            tf_keras.layers.LSTM(self.units, return_sequences=True),
            tf_keras.layers.Dense(self.vocab_size, activation="softmax"),
        ])
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        return model

    def fit(self, lines: Sequence[str], epochs: int = 1,
            steps_per_epoch: Optional[int] = None, callbacks=None, verbose=0):
        """Train on ``lines`` in order. With ``steps_per_epoch`` the dataset is
        repeated (each ``fit`` call restarts from the first line)."""
        ds = self.dataset(lines)
        if steps_per_epoch is not None:
            ds = ds.repeat()
        return self.model.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                              callbacks=callbacks, verbose=verbose)

    # ---------------------------------------------------------- accounting --
    def _real_mask(self, z, y, include_first_char=True):
        m = y != 0
        if not include_first_char:
            m &= z != 0
        return m

    def real_chars(self, lines: Sequence[str], include_first_char: bool = True) -> int:
        """Number of real target positions (real chars + EOS, see module doc)
        delivered by ``dataset(lines)``; computed without one-hot."""
        n = 0
        for i in range(0, len(lines), self.batch_size):
            z, y = self._ids(list(lines[i:i + self.batch_size]))
            n += int(self._real_mask(z, y, include_first_char).sum())
        return n

    def total_positions(self, lines: Sequence[str]) -> int:
        """All [B*T] positions (real + padding) delivered by ``dataset(lines)``."""
        n = 0
        for i in range(0, len(lines), self.batch_size):
            z, _ = self._ids(list(lines[i:i + self.batch_size]))
            n += z.size
        return n

    def evaluate_bits_per_char(self, lines: Sequence[str],
                               include_first_char: bool = True,
                               max_batches: Optional[int] = None) -> float:
        """Mean -log2 p(target) over REAL target positions only.

        Runs the model batch-by-batch over ``dataset(lines)``; a position counts
        iff its target is a real char or EOS (target id != 0); padding targets
        are excluded, so the value is comparable to a properly masked model
        even though this model is trained with padding in its loss.  With
        ``include_first_char=False`` positions whose input is padding are also
        excluded (see module docstring).  Probabilities are clipped at 1e-7
        like Keras' crossentropy.
        """
        total_bits, total_n = 0.0, 0
        for k, (x, y) in enumerate(self.dataset(lines)):
            if max_batches is not None and k >= max_batches:
                break
            p = self._forward(x).numpy().astype(np.float64)
            y = y.numpy()
            tgt = y.argmax(-1)
            inp = x.numpy().argmax(-1)
            m = self._real_mask(inp, tgt, include_first_char)
            pt = np.take_along_axis(p, tgt[..., None], axis=-1)[..., 0]
            pt = np.clip(pt, 1e-7, 1.0)
            total_bits += float(-np.log2(pt[m]).sum())
            total_n += int(m.sum())
        return total_bits / max(total_n, 1)

    # ---------------------------------------------------------- generation --
    def _decode(self, ids: Iterable[int]) -> str:
        iw = self.tokenizer.index_word
        return "".join(iw[i] for i in ids if i not in (0, self.eos_id))

    def generate(self, prompt: str, size: int = 100, stop_at_eos: bool = True,
                 call: str = "model") -> str:
        """Greedy: for each new char one-hot the WHOLE prefix, run the model,
        append argmax. Stops at EOS or after ``size`` new chars.

        ``stop_at_eos=False`` (used only for timing) takes the argmax over real
        chars (ignoring pad/EOS) so exactly ``size`` chars are produced; the
        per-char cost is identical.  ``call="model"`` (notebook) runs
        ``model(x)`` eagerly; ``call="predict"`` uses ``model.predict``.
        """
        return generate(self.model, self.tokenizer, prompt, size,
                        eos_id=self.eos_id, vocab_size=self.vocab_size,
                        stop_at_eos=stop_at_eos, call=call)

    def generate_soft(self, prompt: str, size: int = 100, temperature: float = 1.0) -> str:
        return generate_soft(self.model, self.tokenizer, prompt, size,
                             eos_id=self.eos_id, vocab_size=self.vocab_size,
                             temperature=temperature)


def generate(model, tokenizer, prompt: str, size: int, *, eos_id: int,
             vocab_size: int, stop_at_eos: bool = True, call: str = "model") -> str:
    """Notebook-style greedy generation (prefix re-run for every char).

    ``call="model"`` is what the notebook did: ``model(x)`` in eager mode, where
    tf_keras runs the LSTM time loop op-by-op from Python (no graph, no fused
    kernel) -- this is by far the dominant cost.  ``call="predict"`` uses
    ``model.predict`` (graph function; retraces for the first few prefix
    lengths, then ``reduce_retracing`` relaxes the shape).

    (The first notebook version also aliased ``chars = inp`` so the prompt fed
    to the model got a duplicated char from step 2 on; not reproduced.)
    """
    inp = tokenizer.texts_to_sequences([prompt])[0]
    chars = list(inp)
    for _ in range(size):
        x = tf.expand_dims(tf.one_hot(inp, vocab_size), 0)  # [1, len(prefix), V]
        if call == "predict":
            out = model.predict(x, verbose=0)[0][-1]
        else:
            out = model(x, training=False)[0][-1].numpy()
        if not stop_at_eos:
            out = out.copy()
            out[0] = -1.0
            out[eos_id] = -1.0
        nc = int(np.argmax(out))
        if nc == eos_id:
            break
        chars.append(nc)
        inp = inp + [nc]
    # NOT tokenizer.sequences_to_texts: it joins chars with spaces.
    return "".join(tokenizer.index_word[i] for i in chars if i != 0)


def generate_soft(model, tokenizer, prompt: str, size: int, *, eos_id: int,
                  vocab_size: int, temperature: float = 1.0) -> str:
    """Notebook-style sampling with ``np.random.choice(vocab, p=probs)``.

    Faithfully buggy: the softmax also covers pad id 0, which has no entry in
    ``tokenizer.index_word``; when it is sampled (rare after training, common
    early on) the lookup raises ``KeyError: 0``.  Not used by the benchmark.
    """
    inp = tokenizer.texts_to_sequences([prompt])[0]
    text = prompt
    for _ in range(size):
        x = tf.expand_dims(tf.one_hot(inp, vocab_size), 0)
        probs = model(x, training=False)[0][-1].numpy().astype(np.float64)
        if temperature != 1.0:
            probs = np.exp(np.log(np.maximum(probs, 1e-12)) / temperature)
        probs = probs / probs.sum()
        nc = int(np.random.choice(vocab_size, p=probs))
        if nc == eos_id:
            break
        text += tokenizer.index_word[nc]   # KeyError: 0 if pad is sampled
        inp = inp + [nc]
    return text


# --------------------------------------------------------------------------- #
# measurements (each returns plain numbers)
# --------------------------------------------------------------------------- #
def measure_pipeline_throughput(bl: Baseline, lines: Sequence[str],
                                max_batches: Optional[int] = None,
                                include_first_char: bool = True) -> dict:
    """Iterate ``bl.dataset(lines)`` with no model.

    Returns real target chars/s from the first batch to the last
    (`measure.steady_pass`; the figure with the iterator start-up is kept
    too), all positions/s, padding fraction (1 - real/total positions, i.e.
    fraction of [B,T] slots that are padding targets) and the fraction of
    INPUT slots that are pad ids.
    """
    if max_batches is not None:
        lines = list(lines[: max_batches * bl.batch_size])
    real = bl.real_chars(lines, include_first_char)
    # warm-up (first py_function call / dataset construction)
    for _ in bl.dataset(lines[: bl.batch_size]):
        pass
    timed = steady_pass(bl.dataset(lines), real,
                        lambda first: bl.real_chars(lines[: bl.batch_size], include_first_char))
    total = in_pad = 0
    for i in range(0, len(lines), bl.batch_size):  # all [B, T] slots, and those whose input is padding
        z, _ = bl._ids(list(lines[i:i + bl.batch_size]))
        total += z.size
        in_pad += int((z == 0).sum())
    return {
        "seconds": timed["seconds"],
        "seconds_with_startup": timed["seconds_with_startup"],
        "batches": timed["batches"],
        "real_chars": real,
        "positions": total,
        "real_chars_per_s": timed["real_chars_per_s"],
        "real_chars_per_s_with_startup": timed["real_chars_per_s_with_startup"],
        "positions_per_s": total / timed["seconds_with_startup"],
        "padding_fraction": 1.0 - real / total,
        "input_padding_fraction": in_pad / total,
    }


class _BatchClock(tf_keras.callbacks.Callback):
    """Times of the first and the last `on_train_batch_end`."""

    first = last = None

    def on_train_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last


def measure_training_throughput(bl: Baseline, lines: Sequence[str], steps: int = 200,
                                warmup_steps: int = 20,
                                include_first_char: bool = True) -> dict:
    """Real target chars/s through ``model.fit`` for ``steps`` steps, after a
    separate ``fit`` of ``warmup_steps`` (which traces the train function).

    Uses consecutive, non-overlapping slices of ``lines`` so the exact number
    of real chars consumed is known. Trains ``bl.model`` in place.
    """
    bs = bl.batch_size
    need = (warmup_steps + steps) * bs
    if len(lines) < need:
        reps = need // max(len(lines), 1) + 1
        lines = list(lines) * reps
    warm = list(lines[: warmup_steps * bs])
    timed = list(lines[warmup_steps * bs: need])
    if warm:
        bl.fit(warm, epochs=1)
    # The clock runs from the end of the first timed batch to the end of the last, so the one-off
    # cost of creating the dataset iterator (about a second in some fits on this VM) is not counted,
    # as it is not for the package, whose timed epochs share one iterator.
    clock = _BatchClock()
    hist = bl.fit(timed, epochs=1, callbacks=[clock])
    timed = timed[bs:]
    steps -= 1
    real = bl.real_chars(timed, include_first_char)
    total = bl.total_positions(timed)
    dt = clock.last - clock.first
    return {
        "steps": steps,
        "seconds": dt,
        "real_chars": real,
        "positions": total,
        "real_chars_per_s": real / dt,
        "positions_per_s": total / dt,
        "steps_per_s": steps / dt,
        "loss": float(hist.history["loss"][-1]),
    }


def measure_generation_speed(bl: Baseline, prompt: str = "ROMEO:", size: int = 200,
                             call: str = "model") -> dict:
    """Greedy generation speed for one prompt x ``size`` new chars (EOS is
    suppressed so exactly ``size`` chars are produced). One short warm-up call.
    ``call="model"`` = notebook (eager ``model(x)``); ``"predict"`` = ``model.predict``."""
    bl.generate(prompt, 2, stop_at_eos=False, call=call)
    t0 = time.perf_counter()
    text = bl.generate(prompt, size, stop_at_eos=False, call=call)
    dt = time.perf_counter() - t0
    n_new = len(bl.tokenizer.texts_to_sequences([text])[0]) - \
        len(bl.tokenizer.texts_to_sequences([prompt])[0])
    return {"seconds": dt, "chars": n_new, "chars_per_s": n_new / dt}


# --------------------------------------------------------------------------- #
# smoke / full run
# --------------------------------------------------------------------------- #


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=config.DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (<30 s)")
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    train, val = load_lines(args.data)
    if args.quick:
        train, val = train[:2000], val[:200]
        pipe_batches, steps, warm, secs, gen_size, val_batches, sample_size = 50, 20, 5, 2.0, 10, 10, 10
    else:
        pipe_batches, steps, warm, secs, gen_size, val_batches, sample_size = (
            500, args.steps, 20, args.train_seconds, 200, None, 100)

    bl = Baseline(train, seed=args.seed)
    print(f"lines train={len(train)} val={len(val)} vocab={bl.vocab_size} eos_id={bl.eos_id}")

    p = measure_pipeline_throughput(bl, train, max_batches=pipe_batches)
    print("pipeline:", {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()})

    t = measure_training_throughput(bl, train, steps=steps, warmup_steps=warm)
    print("training:", {k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()})

    # fresh model (full run; --quick keeps the already-traced one to save the
    # ~3 s retrace), train for a wall-clock budget, then validation bits/char
    if not args.quick:
        bl.model = bl.build_model()
    cb = TimeLimit(secs)
    bl.fit(train, epochs=1, callbacks=[cb])
    bpc = bl.evaluate_bits_per_char(val, max_batches=val_batches)
    bpc2 = bl.evaluate_bits_per_char(val, include_first_char=False, max_batches=val_batches)
    print(f"after {cb.elapsed:.1f}s / {cb.steps} steps: val bits/char={bpc:.4f} "
          f"(excluding first-char-from-pad positions: {bpc2:.4f})")

    for call in (("model",) if args.quick else ("model", "predict")):
        g = measure_generation_speed(bl, "ROMEO:", gen_size, call=call)
        print(f"generation[{call}]:", {k: round(v, 4) if isinstance(v, float) else v for k, v in g.items()})
    for prompt in (("To be",) if args.quick else ("ROMEO:", "First Citizen:", "KING ", "To be")):
        print(f"greedy {prompt!r}: {bl.generate(prompt, sample_size)!r}")
    print(f"total {time.perf_counter() - t_start:.1f}s")


if __name__ == "__main__":
    main()
