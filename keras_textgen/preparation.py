"""Preparing a run: corpus -> vocabulary -> settings from the corpus's size -> datasets.

`prepare` is everything `keras-textgen train` does before it builds the
model; `keras_textgen.training` runs `model.fit` on what it returns.

Example:

>>> from keras_textgen import config, preparation
>>> prepared = preparation.prepare(config.TrainConfig(corpus="python-docs"))
>>> prepared.vocab.size, prepared.config.units  # the size rule filled `units`
"""

import dataclasses
import time
import typing

import tensorflow as tf

from keras_textgen import corpus as corpus_lib
from keras_textgen import data as data_lib
from keras_textgen import distribute
from keras_textgen import errors
from keras_textgen import losses
from keras_textgen import sizing
from keras_textgen import tables
from keras_textgen import vocab as vocab_lib
from keras_textgen.config import AUTO_FIELDS, TrainConfig
from keras_textgen.vocab import Vocabulary


def fill_from_corpus(config, tokens, vocab_size=None):
    """`config` with each `AUTO_FIELDS` field left `None` set by `keras_textgen.sizing.choose`.

    Returns:
        `(config, choice)`: a new `TrainConfig`, and the `sizing.Choice`
        the rule made for `tokens` training tokens (its fields are the
        rule's, whether or not the config took them).
    """
    choice = sizing.choose(tokens, config.level, vocab_size, time_budget=config.time_budget)
    picked = {name: getattr(choice, name) for name in AUTO_FIELDS if getattr(config, name) is None}
    return dataclasses.replace(config, **picked), choice


def describe(config, tokens):
    """One line: the corpus size and the settings a run trains with, e.g. for the start of `train`."""
    encoding = f"embedding {config.embedding_dim}" if config.embedding_dim else "one-hot"
    words = ""
    if config.level == "word":
        words = f", words seen >= {config.min_frequency or 1}x, at most {config.max_tokens or 'all'}"
    return (f"corpus of {tokens:,} {config.level}s -> {config.cell.upper()} {config.units}"
            + (f" x{config.layers}" if config.layers > 1 else "")
            + f", dropout {config.dropout:g}"
            + (f", recurrent dropout {config.recurrent_dropout:g}" if config.recurrent_dropout else "") + ", "
            + (f"AdamW wd {config.weight_decay:g}" if config.weight_decay else "Adam")
            + f", batch {config.batch_size}, lr {config.learning_rate:g} ({config.lr_schedule}), {encoding}{words}")


class Prepared(typing.NamedTuple):
    """What `prepare` gives: the corpus, the vocabulary, the datasets and the config with the rule's choices."""

    corpus: corpus_lib.Corpus
    vocab: Vocabulary
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset
    config: TrainConfig
    tokens: int  # training tokens (characters or words)
    pass_steps: int  # training batches in one pass over the data
    targets_per_sequence: float  # real targets per training sequence, on average: the loss's scale


def prepare(config, replicas=1, workers=1, print_fn=None, strategy=None):
    """Loads the corpus, fills the settings left to the corpus's size, adapts the vocabulary, builds datasets.

    Args:
        config: the `TrainConfig`; fields left `None` in `AUTO_FIELDS` are
            picked by `keras_textgen.sizing` from the training split's size.
        replicas: replicas of the distribution strategy: batches hold
            `config.batch_size * replicas` examples (the global batch), and
            partial training batches are dropped when `replicas > 1` so every
            replica gets an equal share.
        workers: processes of a multi-worker run: a streamed corpus of at
            least as many files is sharded by file (each worker counts and
            trains on its own files only), anything else by data.
        print_fn: where a streamed corpus's vocabulary pass reports its
            progress (`None`: silent).
        strategy: the run's `tf.distribute` strategy: a corpus sharded by
            file merges the workers' token counts through its collectives.

    Returns:
        A `Prepared`: `(corpus, vocab, train_ds, val_ds, config, tokens, pass_steps, targets_per_sequence)`.
        The training dataset repeats when `steps_per_epoch` or `validate_every` is set, and for a
        streamed corpus, whose epoch is then one pass as the vocabulary pass counted it.
    """
    budget = corpus_lib.budget_bytes(config.memory_budget)
    # A multi-worker run on a streamed corpus of enough files shards it by file: each worker reads only its own
    # files, for the vocabulary pass as for training (tf.data's AutoShardPolicy.FILE cannot see the files
    # through the Dataset.random of lines mode or the scan of chunks mode). Otherwise each worker takes every
    # n-th batch of the whole stream (AutoShardPolicy.DATA). Validation is sharded by data.
    index = distribute.worker_index(config) if workers > 1 else 0
    corpus = corpus_lib.load(config.corpus, mode=config.mode, column=config.column, header=config.header,
                             data_dir=config.data_dir, manual_dir=config.manual_dir, memory_budget=budget,
                             shard=(workers, index) if workers > 1 else None)
    by_file = corpus.sharded
    if by_file and strategy is None:
        raise errors.ConfigError(f"prepare(workers={workers}) on a corpus sharded by file needs the run's strategy "
                                 "(strategy=...), whose collectives merge the workers' vocabulary counts")
    progress = None
    if corpus.streamed:  # the bytes this worker's pass reads
        progress = VocabularyProgress(corpus.shard_bytes if by_file else corpus.size_bytes,
                                      print_fn or (lambda *_: None))
    try:
        counts = vocab_lib.count(corpus.train, level=config.level, lowercase=config.lowercase,
                                 batch_size=4 if corpus.mode == "chunks" else 1024,  # a chunks piece: up to 1 MB
                                 progress=progress)
    except tf.errors.InvalidArgumentError as e:
        if not (corpus.streamed and corpus.files and corpus.files[0].lower().endswith(tuple(corpus_lib.TABULAR))):
            raise
        # The pass parses every row of a streamed CSV/TSV: a row CsvDataset cannot read stops it here, before training.
        raise errors.DataError(tables.stream_error(corpus.source, e)) from None
    if by_file:  # every worker gets the same counts, so the same vocabulary and steps per epoch
        counts = vocab_lib.Counts.merge(vocab_lib.Counts.from_bytes(part) for part in distribute.all_gather_bytes(
            strategy, counts.to_bytes(), workers, index))
    tokens = counts.total
    min_frequency, max_tokens = sizing.vocabulary_settings(tokens, config.level)
    vocab = Vocabulary.from_counts(counts.tokens, level=config.level,
                                   max_tokens=config.max_tokens if config.max_tokens is not None else max_tokens,
                                   min_frequency=config.min_frequency or min_frequency or 1,
                                   lowercase=config.lowercase)
    if progress:
        progress.done(vocab.size)
    config, _ = fill_from_corpus(config, tokens, vocab.size)
    global_batch = config.batch_size * replicas
    common = dict(vocab=vocab, mode=corpus.mode, batch_size=global_batch, seq_len=config.seq_len,
                  max_length=config.max_line_length, seed=config.seed, cache=not corpus.streamed)
    drop = replicas > 1 or config.strategy == "tpu"
    # A dataset that may be empty is never repeated: it would loop without end looking for an element.
    twin = data_lib.make_dataset(corpus.train, shuffle=False, drop_remainder=drop, **{**common, "cache": False})
    has_examples = {"training": any(True for _ in twin.take(1))}
    val_ds = data_lib.make_dataset(corpus.validation, shuffle=False, drop_remainder=drop, **common)
    if corpus.streamed:
        # Evaluating all of a large held-out split would take longer than training between evaluations:
        # a streamed corpus evaluates on the first batches of it, the same ones each time, kept in memory.
        val_ds = val_ds.take(config.validation_steps or STREAMED_VALIDATION_BATCHES).cache()
    # Keras splits each global batch between replicas and needs equal shares (a partial batch fails in
    # its first-batch probe), so with several replicas partial batches are dropped, validation included.
    val_ds = data_lib.with_known_cardinality(val_ds)
    has_examples["validation"] = int(val_ds.cardinality()) > 0
    for name, ok in has_examples.items():
        if not ok:
            hint = (f" (shorter than one window of seq_len+1={config.seq_len + 1} tokens; lower --seq-len)"
                    if corpus.mode == "chunks" else "")
            if drop:
                hint += f" (with {replicas} replicas a global batch is {global_batch} examples; lower --batch-size)"
            raise errors.DataError(f"the {name} split of {config.corpus!r} yields no examples{hint}")
    if corpus.streamed and config.steps_per_epoch is None and config.validate_every is None:
        # Counting the batches would be a second pass over the files: the vocabulary pass counted them.
        config = dataclasses.replace(config, steps_per_epoch=max(1, _batches(counts, corpus.mode, config,
                                                                             global_batch, drop)))
    repeat = config.steps_per_epoch is not None or config.validate_every is not None
    train_ds = data_lib.make_dataset(corpus.train, repeat=repeat, drop_remainder=drop, **common)
    if repeat:
        pass_steps = config.steps_per_epoch or (
            _batches(counts, corpus.mode, config, global_batch, drop) if corpus.streamed
            else int(data_lib.with_known_cardinality(twin).cardinality()))
    else:
        train_ds = data_lib.with_known_cardinality(train_ds)
        pass_steps = int(train_ds.cardinality())
    by_data = tf.data.Options()
    by_data.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_options = by_data
    if by_file:  # the files are sharded above: tf.data's sharding is off
        train_options = tf.data.Options()
        train_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return Prepared(corpus, vocab, train_ds.with_options(train_options), val_ds.with_options(by_data), config, tokens,
                    pass_steps, losses.targets_per_sequence(counts, corpus.mode, config.seq_len,
                                                            config.max_line_length))


# Validation batches of a streamed corpus when --validation-steps is not set.
STREAMED_VALIDATION_BATCHES = 100


def _batches(counts, mode, config, global_batch, drop):
    """Training batches in one pass, from the vocabulary pass's counts (no pass of its own).

    Chunks: the stream is every token plus one EOS per document, cut into
    windows of `seq_len + 1`. Lines: one example per line (a line that
    encodes to no token is dropped by `make_dataset`, so this can be high by
    a batch or so, which only moves where a repeated stream's epochs end).
    """
    examples = (counts.total + counts.documents) // (config.seq_len + 1) if mode == "chunks" else counts.texts
    return examples // global_batch if drop else -(-examples // global_batch)


class VocabularyProgress:
    """Prints the vocabulary pass's progress: MB read of the corpus's MB, and the rate, every few seconds."""

    def __init__(self, total_bytes, print_fn, every=5.0):
        self.total, self.print_fn, self.every = total_bytes, print_fn, every
        self.start = self.last = time.monotonic()
        self.read = 0

    def __call__(self, read):
        self.read = read
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            share = f" ({read / self.total:.0%})" if self.total else ""
            self.print_fn(f"Vocabulary pass: {read / 1e6:,.0f} of {self.total / 1e6:,.0f} MB{share}, "
                          f"{self.rate():,.1f} MB/s")

    def rate(self):
        return self.read / 1e6 / max(time.monotonic() - self.start, 1e-9)

    def done(self, vocab_size):
        self.seconds = time.monotonic() - self.start
        self.print_fn(f"Vocabulary pass: {self.read / 1e6:,.1f} MB of training text in {self.seconds:.1f} s "
                      f"({self.rate():,.1f} MB/s), {vocab_size} ids")
