"""Next-token sampling as TF ops: greedy, temperature, top-k and top-p.

All strategies are one graph function, `sample_next`, whose knobs are
tensors, so a single exported signature serves every strategy. Drawing is
the Gumbel-max trick on Philox uniforms (`tf.random.stateless_uniform`),
which also compiles with XLA (`tf.random.stateless_categorical` has no XLA
kernel on CPU). XLA generates its own Philox stream, so under XLA a seed
draws other (equally distributed) ids. The small classes below (`Greedy`,
`Temperature`, `TopK`, `TopP`) name common settings for the Python API,
`generate(..., sampling=TopK(10))`. They are not keras-hub samplers, which
run a decoding loop themselves (`sampler(next, prompt, ...)`): here the loop
is `TextGenerator`'s, and these only name its knobs.

Sampling never returns the pad or OOV id, and it is stateless: the same
logits, settings and `seed` give the same ids on every run and every server.
"""

import math

import numpy as np
import tensorflow as tf

from keras_textgen import errors
from keras_textgen import vocab as vocab_lib

BANNED_IDS = (vocab_lib.PAD_ID, vocab_lib.OOV_ID)
_TINY = float(np.finfo(np.float32).tiny)


def scale(logits, temperature):
    """Logits divided by a temperature > 0 (floored at 1e-6)."""
    return logits / tf.maximum(tf.cast(temperature, tf.float32), 1e-6)


def gumbel_argmax(logits, seed):
    """One id per row of `[batch, V]` logits, drawn from `softmax(logits)`.

    Gumbel-max: `argmax(logits + g)` with `g = -log(-log(u))` is an exact
    sample of the softmax. `u` comes from the stateless Philox generator,
    in `[tiny, 1)` so `g` is always finite: ids with logit -inf are never
    drawn.

    Args:
        logits: float32 `[batch, V]`.
        seed: int `[2]`; the same seed gives the same ids.
    """
    u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, minval=_TINY, maxval=1.0, alg="philox")
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)


def filter_logits(logits, temperature, top_k, top_p):
    """Applies the ban on pad/OOV, temperature, top-k and top-p to `[batch, V]` logits.

    `temperature <= 0` leaves the scale alone (greedy decoding takes the
    argmax anyway); `top_k <= 0` and `top_p >= 1` turn those filters off.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab_size = tf.shape(logits)[-1]
    banned = tf.reduce_any(tf.equal(tf.range(vocab_size)[:, None], tf.constant(BANNED_IDS)[None, :]), axis=-1)
    neg_inf = tf.constant(-math.inf, tf.float32)
    logits = tf.where(banned[None, :], neg_inf, logits)
    temperature = tf.cast(temperature, tf.float32)
    logits = tf.where(temperature > 0.0, scale(logits, temperature), logits)

    def apply_top_k():
        # The k-th largest logit by sort + gather: `tf.math.top_k` would need
        # k as a compile-time constant under XLA.
        k = tf.clip_by_value(tf.cast(top_k, tf.int32), 1, vocab_size)
        kth = tf.gather(tf.sort(logits, axis=-1, direction="DESCENDING"), [k - 1], axis=-1)
        return tf.where(logits < kth, neg_inf, logits)

    logits = tf.cond(tf.cast(top_k, tf.int32) > 0, apply_top_k, lambda: logits)

    def apply_top_p():
        sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
        probs = tf.nn.softmax(sorted_logits, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
        before = tf.cumsum(probs, axis=-1, exclusive=True)
        keep = before < tf.cast(top_p, tf.float32)
        threshold = tf.reduce_min(tf.where(keep, sorted_logits, math.inf), axis=-1, keepdims=True)
        return tf.where(logits < threshold, neg_inf, logits)

    return tf.cond(tf.cast(top_p, tf.float32) < 1.0, apply_top_p, lambda: logits)


def sample_next(logits, temperature=1.0, top_k=0, top_p=1.0, seed=(0, 0)):
    """Picks one token id per row of `[batch, V]` logits.

    Args:
        logits: float `[batch, V]` next-token logits.
        temperature: 0 means greedy (argmax); otherwise logits are divided
            by it before sampling.
        top_k: sample only among the k most likely tokens (0 = off).
        top_p: sample only from the smallest set of tokens whose probability
            reaches p (1.0 = off).
        seed: int `[2]` seed of the draw (see `gumbel_argmax`).

    Returns:
        int32 `[batch]` token ids, never the pad or OOV id.
    """
    filtered = filter_logits(logits, temperature, top_k, top_p)
    greedy = tf.argmax(filtered, axis=-1, output_type=tf.int32)
    sampled = gumbel_argmax(filtered, seed)
    return tf.where(tf.cast(temperature, tf.float32) > 0.0, sampled, greedy)


def greedy_pick(logits, temperature, top_k, top_p, seed):
    """The most likely id of each row (the other knobs are unused)."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def temperature_pick(logits, temperature, top_k, top_p, seed):
    """An id drawn from `softmax(logits / temperature)` (no top-k or top-p filter)."""
    return gumbel_argmax(scale(logits, temperature), seed)


def filtered_pick(logits, temperature, top_k, top_p, seed):
    """An id drawn after the top-k and top-p filters: `sample_next`."""
    return sample_next(logits, temperature, top_k, top_p, seed=seed)


# The generation loop's token pickers, one per strategy, indexed by `pick_index`. Each has the signature
# `(logits, temperature, top_k, top_p, seed)`; the logits come with pad and OOV already banned.
PICKS = (greedy_pick, temperature_pick, filtered_pick)


def pick_index(temperature, top_k, top_p):
    """The index in `PICKS` of the picker for these settings: 0 greedy, 1 temperature, 2 filtered."""
    filtered = tf.logical_or(tf.cast(top_k, tf.int32) > 0, tf.cast(top_p, tf.float32) < 1.0)
    sampled = tf.cast(temperature, tf.float32) > 0.0
    return tf.where(sampled, tf.where(filtered, 2, 1), 0)


def check_sampling_args(temperature, top_k, top_p):
    """Raises `ConfigError` for settings that have no meaning."""
    if temperature is None or not math.isfinite(float(temperature)) or float(temperature) < 0:
        raise errors.ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_k is None or int(top_k) != top_k or int(top_k) < 0:
        raise errors.ConfigError(f"top_k must be an integer >= 0 (0 = off), got {top_k}")
    if top_p is None or not (0.0 < float(top_p) <= 1.0):
        raise errors.ConfigError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


class Sampling:
    """Base class: a named setting of `temperature`, `top_k` and `top_p` for `generate(sampling=...)`.

    Subclasses only choose the settings; the sampling itself is always
    `sample_next`, the same op the exported models run.
    """

    def __init__(self, temperature=1.0, top_k=0, top_p=1.0):
        check_sampling_args(temperature, top_k, top_p)
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)

    def __call__(self, logits, seed=(0, 0)):
        return sample_next(logits, self.temperature, self.top_k, self.top_p, seed)

    def get_config(self):
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Greedy(Sampling):
    """Always the most likely token.

    >>> Greedy()(tf.constant([[0.0, 0.0, 0.0, 5.0]])).numpy().tolist()
    [3]
    """

    def __init__(self):
        super().__init__(temperature=0.0)


class Temperature(Sampling):
    """Samples from the softmax at a temperature (below 1: safer, above: wilder)."""

    def __init__(self, temperature=1.0):
        super().__init__(temperature=temperature)


class TopK(Sampling):
    """Samples among the `k` most likely tokens."""

    def __init__(self, k=10, temperature=1.0):
        super().__init__(temperature=temperature, top_k=k)


class TopP(Sampling):
    """Nucleus sampling: among the fewest tokens holding probability `p`."""

    def __init__(self, p=0.9, temperature=1.0):
        super().__init__(temperature=temperature, top_p=p)
