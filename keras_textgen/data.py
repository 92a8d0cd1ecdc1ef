"""Graph-only `tf.data` pipelines: strings -> (inputs, next-token targets) batches.

Every transform here is a TensorFlow op (`tf.strings` splitting, a
`StringLookup`, `RaggedTensor.to_tensor` padding, length sorting and dense
slicing, `Dataset.random` seeds); there is no `py_function`,
`numpy_function` or Python callback in the dataset graph, so the pipeline runs
in parallel C++ and can be serialised and distributed.

Targets: every sequence starts with the EOS id, which doubles as
"beginning of text", so the model also learns how a text starts and an empty
prompt is meaningful. For a line with ids `[a, b, c]` the input is
`[EOS, a, b, c]` and the target `[a, b, c, EOS]`: the input shifted left by
one with EOS appended. In chunks mode each document is `[EOS] + ids` and the
concatenated stream is cut into windows of `seq_len + 1` ids across the
documents' boundaries (only its last, partial window is dropped), split
into `window[:-1]` and `window[1:]`.
"""

import tensorflow as tf

from keras_textgen import corpus as corpus_lib
from keras_textgen import errors
from keras_textgen import vocab as vocab_lib
from keras_textgen.sources import plain  # no AutoGraph for tf.data functions
from keras_textgen.config import DEFAULT_MAX_LENGTH  # noqa: F401  (one copy, importable without TensorFlow)

# Lines mode works on windows of this many batches at a time (see lines_batches).
WINDOW_BATCHES = 32
# Random tokens of slack in the length sort, so batches change from epoch to epoch.
LENGTH_JITTER = 2.0


def make_targets(ids):
    """`ids [T]` -> `(inputs [T+1], targets [T+1])`: EOS-prefixed input, EOS-suffixed target."""
    eos = tf.constant([vocab_lib.EOS_ID], dtype=ids.dtype)
    return tf.concat([eos, ids], axis=0), tf.concat([ids, eos], axis=0)


def make_dataset(texts, vocab, mode="lines", batch_size=64, seq_len=100, max_length=DEFAULT_MAX_LENGTH,
                 shuffle=True, bucket=True, cache=True, repeat=False, seed=None, shuffle_buffer=10_000,
                 drop_remainder=False):
    """Builds a batched next-token dataset from a dataset of strings.

    Args:
        texts: `tf.data.Dataset` of scalar strings (a `Corpus` split; in
            chunks mode also `(piece, starts_document)` pairs).
        vocab: the `Vocabulary`.
        mode: `"lines"`: one example per string, padded per batch;
            `"chunks"`: strings are documents cut into windows of `seq_len`.
        batch_size: examples per batch.
        seq_len: window length in chunks mode.
        max_length: in lines mode, the widest example: a line keeps its
            first `max_length - 1` tokens, and its inputs and targets add
            one EOS each.
        shuffle: shuffle examples (with `seed`) each epoch.
        bucket: in lines mode, batch lines of similar length together, so
            little of each batch is padding (see `lines_batches`).
        cache: cache the encoded examples in memory after the first epoch.
        repeat: repeat forever (use with `steps_per_epoch`).
        seed: shuffle seed, for reproducible runs.
        drop_remainder: drop a final partial batch (fixed shapes, e.g. TPU).
        shuffle_buffer: examples in the shuffle buffer: chunk windows, or
            lines when `cache=False` in lines mode.

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
    if mode == "lines":
        texts = corpus_lib.texts_of(texts)
    batch_size = int(batch_size)
    if mode == "lines":
        ds = lines_batches(texts, vocab, batch_size, max_length=int(max_length), shuffle=shuffle, bucket=bucket,
                           cache=cache, repeat=repeat, seed=seed, drop_remainder=drop_remainder,
                           shuffle_buffer=shuffle_buffer)
    else:
        ds = chunk_batches(texts, vocab, batch_size, seq_len=int(seq_len), shuffle=shuffle, cache=cache,
                           repeat=repeat, seed=seed, shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def chunk_batches(texts, vocab, batch_size, seq_len=100, shuffle=True, cache=True, repeat=False, seed=None,
                  shuffle_buffer=10_000, drop_remainder=False):
    """Chunks mode: the documents, each `[EOS] + ids`, as one stream cut into windows of `seq_len + 1` ids.

    `texts` holds whole documents (scalar strings), or `(piece, starts_document)`
    pairs, as a corpus read from files gives them: a document's pieces in
    order, EOS only before the first. Windows run across documents'
    boundaries; only the stream's last `< seq_len + 1` ids, which make no
    whole window, are dropped. A stream shorter than one window yields no
    element (and `repeat` is not applied to it: see `preparation.prepare`).

    Example:

    >>> vocab = Vocabulary.adapt(["abcdefgh"])
    >>> ds = chunk_batches(tf.data.Dataset.from_tensor_slices(["abcde", "fgh"]), vocab, 8, seq_len=3, shuffle=False)
    >>> next(iter(ds))[0].numpy().tolist()  # inputs [EOS]ab and de[EOS]; the tail 'gh' makes no window of 4
    [[2, 3, 4], [6, 7, 2]]
    """
    window = seq_len + 1
    if not isinstance(texts.element_spec, tuple):
        texts = texts.map(plain(lambda text: (text, tf.constant(True))))

    @plain
    def ids(text, starts):
        encoded = tf.cast(vocab.encode(text), tf.int32)
        eos = tf.fill(tf.where(starts, 1, 0)[None], vocab_lib.EOS_ID)
        return tf.concat([eos, encoded], axis=0)

    @plain
    def cut(carry, piece):
        """The ids left over from earlier pieces + this piece's -> their whole windows; the rest carries on."""
        stream = tf.concat([carry, piece], axis=0)
        n = tf.size(stream) // window
        return stream[n * window:], tf.reshape(stream[:n * window], [n, window])

    # The carry is less than one window, so memory follows the largest piece, never the corpus. (Dataset.rebatch
    # carries the same way, but slices a piece of a megabyte about a hundred times slower.)
    ds = (texts.map(ids, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .scan(tf.zeros([0], tf.int32), cut)
          .map(plain(lambda w: (w[:, :-1], w[:, 1:])), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .unbatch())
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def lines_batches(texts, vocab, batch_size, max_length=DEFAULT_MAX_LENGTH, shuffle=True, bucket=True,
                  cache=True, repeat=False, seed=None, drop_remainder=False, shuffle_buffer=10_000):
    """Lines mode, vectorised: whole windows of lines are encoded and batched at once.

    `WINDOW_BATCHES * batch_size` lines are encoded in one call (a ragged
    batch) and cached. Each epoch the windows are shuffled, the lines of a
    window are sorted by length (plus up to `LENGTH_JITTER` random tokens,
    drawn from `Dataset.random`, so the batches differ between epochs),
    padded once into a dense window from which inputs (`[EOS] + ids`) and
    targets (`ids + [EOS]`) are made with dense ops, and cut into batches,
    each only as wide as its longest line. This is
    what `bucket_by_sequence_length` does, but per window instead of per
    line: tf.data's per-element overhead is paid once per window, which
    makes the pipeline several times faster on short lines, and sorting
    packs batches tighter than fixed bucket boundaries. The batches of a
    window come out in random order, window after window.
    With `bucket=False` the lines of a window are batched in random order
    (or in corpus order when `shuffle=False`).
    """
    autotune = tf.data.AUTOTUNE
    rows = batch_size * WINDOW_BATCHES
    keep = max_length - 1  # ids kept per line: inputs and targets add one EOS each

    @plain
    def sort_and_pad(ids, seed_pair):
        """One window of encoded lines -> `(x, y, widths, order)`.

        The lines are sorted (or shuffled), empty ones dropped, and padded
        once into a dense window cut at `keep` ids; then `x = [EOS] + ids`
        and `y = ids + [EOS]` (padding after both), and the batches' order.
        """
        lengths = tf.minimum(ids.row_lengths(), keep)
        noise = tf.random.stateless_uniform(tf.shape(lengths), seed=seed_pair)
        if bucket:
            key = tf.cast(lengths, tf.float32) + (noise * LENGTH_JITTER if shuffle else 0.0)
            perm = tf.argsort(key, stable=True)
        elif shuffle:
            perm = tf.argsort(noise)
        else:
            perm = tf.range(tf.size(lengths))
        perm = tf.boolean_mask(perm, tf.gather(lengths, perm) > 0)
        ids, lengths = tf.gather(ids, perm), tf.gather(lengths, perm)
        n_rows = tf.size(lengths)
        widths = tf.math.segment_max(lengths + 1, tf.range(n_rows) // batch_size)
        longest = tf.reduce_max(tf.concat([lengths, [0]], axis=0))  # 0 for a window of empty lines
        dense = ids.to_tensor(vocab_lib.PAD_ID, shape=tf.stack([tf.cast(n_rows, tf.int64), longest]))
        x = tf.concat([tf.fill([n_rows, 1], vocab_lib.EOS_ID), dense], axis=1)
        y = tf.concat([dense, tf.fill([n_rows, 1], vocab_lib.PAD_ID)], axis=1)
        at_end = tf.equal(tf.range(tf.shape(y, out_type=tf.int64)[1])[None, :], lengths[:, None])
        y = tf.where(at_end, vocab_lib.EOS_ID, y)
        n = n_rows // batch_size if drop_remainder else (n_rows + batch_size - 1) // batch_size
        order = tf.range(n, dtype=tf.int64)
        if shuffle:  # the window's batches in random order
            order = tf.gather(order, tf.argsort(tf.random.stateless_uniform([n], seed=seed_pair + 1)))
        return x, y, widths, order

    @plain
    def window_batches(x, y, widths, order):
        """A prepared window -> a dataset of (window, batch index), one element per batch."""
        window = tf.data.Dataset.from_tensors((x, y, widths)).repeat()
        return tf.data.Dataset.zip((window, tf.data.Dataset.from_tensor_slices(order)))

    @plain
    def cut(window, i):
        x, y, widths = window
        rows_i = slice(i * batch_size, (i + 1) * batch_size)
        return x[rows_i, :widths[i]], y[rows_i, :widths[i]]

    if shuffle and not cache:
        # New windows every epoch; shuffling lines (not encoded windows) lets
        # encoding overlap with training instead of filling a window buffer.
        texts = texts.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = texts.batch(rows).map(plain(vocab.encode), num_parallel_calls=autotune, deterministic=True)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(1024, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    # The per-window work runs in a parallel map; flat_map, which is serial, only slices.
    ds = tf.data.Dataset.zip((ds, seeds)).map(sort_and_pad, num_parallel_calls=autotune, deterministic=True)
    ds = ds.flat_map(window_batches)
    # A slice per batch is cheaper inline than handed to a parallel map's threads.
    return ds.map(cut)


def with_known_cardinality(dataset):
    """Counts the batches of a finite dataset once and records the count.

    Keras then knows the epoch length up front (a progress bar with an end,
    and no "input ran out of data" warning in the first epoch). The pass also
    fills the dataset's cache.
    """
    n = int(dataset.reduce(tf.constant(0, tf.int64), plain(lambda n, _: n + 1)))
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
    return int(dataset.reduce(tf.constant(0, tf.int64), plain(lambda n, xy: n + tf.math.count_nonzero(xy[1]))))
