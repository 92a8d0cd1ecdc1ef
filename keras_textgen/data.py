"""Graph-only `tf.data` pipelines: strings -> (inputs, next-token targets) batches.

Every transform here is a TensorFlow op (`tf.strings`, `StringLookup`,
`padded_batch`, `bucket_by_sequence_length`); there is no `py_function`,
`numpy_function` or Python callback in the dataset graph, so the pipeline runs
in parallel C++ and can be serialised and distributed.

Targets: every sequence starts with the EOS id, which doubles as
"beginning of text", so the model also learns how a text starts and an empty
prompt is meaningful. For a line with ids `[a, b, c]` the input is
`[EOS, a, b, c]` and the target `[a, b, c, EOS]`: the input shifted left by
one with EOS appended. In chunks mode each document is `[EOS] + ids` and the
concatenated stream is cut into windows of `seq_len + 1` ids, split into
`window[:-1]` and `window[1:]`.
"""

import math

import tensorflow as tf

from keras_textgen import errors
from keras_textgen import vocab as vocab_lib

DEFAULT_MAX_LENGTH = 256


def default_bucket_boundaries(max_length, growth=1.1):
    """Sequence-length bucket edges growing by ~`growth`, so a batch wastes little padding."""
    edges, edge = [], 8
    while edge < max_length:
        edges.append(edge)
        edge = max(edge + 1, int(math.ceil(edge * growth)))
    return edges


def make_targets(ids):
    """`ids [T]` -> `(inputs [T+1], targets [T+1])`: EOS-prefixed input, EOS-suffixed target."""
    eos = tf.constant([vocab_lib.EOS_ID], dtype=ids.dtype)
    return tf.concat([eos, ids], axis=0), tf.concat([ids, eos], axis=0)


def make_dataset(texts, vocab, mode="lines", batch_size=64, seq_len=100, max_length=DEFAULT_MAX_LENGTH,
                 shuffle=True, bucket=True, cache=True, repeat=False, seed=None, shuffle_buffer=10_000,
                 drop_remainder=False):
    """Builds a batched next-token dataset from a dataset of strings.

    Args:
        texts: `tf.data.Dataset` of scalar strings (a `Corpus` split).
        vocab: the `Vocabulary`.
        mode: `"lines"`: one example per string, padded per batch;
            `"chunks"`: strings are documents cut into windows of `seq_len`.
        batch_size: examples per batch.
        seq_len: window length in chunks mode.
        max_length: in lines mode, longer lines are cut to this many tokens.
        shuffle: shuffle examples (with `seed`) each epoch.
        bucket: in lines mode, batch lines of similar length together with
            `bucket_by_sequence_length`, so little of each batch is padding.
        cache: cache the encoded examples in memory after the first epoch.
        repeat: repeat forever (use with `steps_per_epoch`).
        seed: shuffle seed, for reproducible runs.
        drop_remainder: drop a final partial batch (fixed shapes, e.g. TPU).

    Returns:
        A `tf.data.Dataset` of `(inputs, targets)`, both int32 `[batch, T]`,
        padded with 0 (the masked pad id).

    Example:

    >>> vocab = Vocabulary.adapt(["hello", "world"])
    >>> ds = make_dataset(tf.data.Dataset.from_tensor_slices(["hello"]), vocab, batch_size=1)
    >>> x, y = next(iter(ds))
    >>> x.numpy().tolist(), y.numpy().tolist()
    ([[2, 5, 4, 6, 6, 7]], [[5, 4, 6, 6, 7, 2]])
    """
    if batch_size is None or int(batch_size) < 1:
        raise errors.ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    if mode not in ("lines", "chunks"):
        raise errors.ConfigError(f"mode must be 'lines' or 'chunks', got {mode!r}")
    if mode == "chunks" and (seq_len is None or int(seq_len) < 1):
        raise errors.ConfigError(f"seq_len must be a positive integer, got {seq_len}")
    if mode == "lines" and (max_length is None or int(max_length) < 2):
        raise errors.ConfigError(f"max_length must be at least 2, got {max_length}")
    if not isinstance(texts, tf.data.Dataset):
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    autotune = tf.data.AUTOTUNE
    batch_size = int(batch_size)

    if mode == "lines":
        keep = int(max_length) - 1  # room for the EOS added on each side
        ds = texts.map(vocab.encode, num_parallel_calls=autotune, deterministic=True)
        ds = ds.filter(lambda ids: tf.size(ids) > 0)
        ds = ds.map(lambda ids: make_targets(ids[:keep]), num_parallel_calls=autotune, deterministic=True)
    else:
        window = int(seq_len) + 1

        def windows(text):
            ids = tf.concat([[vocab_lib.EOS_ID], vocab.encode(text)], axis=0)
            n = tf.size(ids) // window
            return tf.data.Dataset.from_tensor_slices(tf.reshape(ids[: n * window], [n, window]))

        ds = texts.flat_map(windows).map(lambda w: (w[:-1], w[1:]), num_parallel_calls=autotune)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if mode == "chunks":
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    elif bucket:
        boundaries = default_bucket_boundaries(int(max_length))
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda x, y: tf.shape(x)[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(vocab_lib.PAD_ID, vocab_lib.PAD_ID),
            drop_remainder=drop_remainder)
    else:
        ds = ds.padded_batch(batch_size, padding_values=(vocab_lib.PAD_ID, vocab_lib.PAD_ID),
                             drop_remainder=drop_remainder)
    return ds.prefetch(autotune)


def with_known_cardinality(dataset):
    """Counts the batches of a finite dataset once and records the count.

    Keras then knows the epoch length up front (a progress bar with an end,
    and no "input ran out of data" warning in the first epoch). The pass also
    fills the dataset's cache.
    """
    n = int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return dataset.apply(tf.data.experimental.assert_cardinality(n))


def padding_fraction(dataset, max_batches=None):
    """Share of batch positions that are padding (inputs equal to the pad id)."""
    total = real = 0
    for i, (x, _) in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        total += int(tf.size(x))
        real += int(tf.math.count_nonzero(x))
    return 1.0 - real / total if total else 0.0


def count_tokens(dataset):
    """Number of real (non-padding) target tokens in a batched dataset."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, xy: n + tf.math.count_nonzero(xy[1])))
