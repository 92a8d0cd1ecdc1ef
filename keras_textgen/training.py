"""The training job behind `keras-textgen train`: corpus -> vocab -> datasets -> fit -> model dir.

Python users who want `model.fit` in plain sight should read `pipelines/`;
this module packages the same steps with the standard Keras callbacks and
the crash-safe model directory of `keras_textgen.artifacts`.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
import typing

import keras
import tensorflow as tf

from keras_textgen import _compat
from keras_textgen import artifacts
from keras_textgen import backup
from keras_textgen import callbacks as callbacks_lib
from keras_textgen import corpus as corpus_lib
from keras_textgen import data as data_lib
from keras_textgen import distribute
from keras_textgen import errors
from keras_textgen import generator_cache
from keras_textgen import history as history_lib
from keras_textgen import io_utils
from keras_textgen import lock
from keras_textgen import model as model_lib
from keras_textgen import schedules
from keras_textgen import sizing
from keras_textgen import steps as steps_lib
from keras_textgen import stopping
from keras_textgen import tables
from keras_textgen import threads
from keras_textgen import vocab as vocab_lib
from keras_textgen.vocab import Vocabulary


# The dataclass lives in keras_textgen.config (no TensorFlow import: the CLI reads its defaults).
from keras_textgen.config import AUTO_FIELDS, DEFAULT_TIME_BUDGET, SCHEDULES, TrainConfig  # noqa: E402,F401

WARMUP_STEPS = 100  # at most; a tenth of a shorter run
LR_FLOOR = 0.1  # the schedule's last learning rate, as a fraction of its peak


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
            + f", dropout {config.dropout:g}, "
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
        A `Prepared`: `(corpus, vocab, train_ds, val_ds, config, tokens, pass_steps)`.
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
                    pass_steps)


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


def evaluation_plan(config, pass_steps):
    """`(epochs, steps_per_epoch)` for `model.fit`: Keras evaluates at the end of each of its epochs.

    Without `validate_every` these are the config's own. With it, a Keras
    epoch is `validate_every` steps of the repeated stream, and there are as
    many as fit in `config.epochs` passes of `pass_steps` steps (rounded up).
    """
    if config.validate_every is None:
        return config.epochs, config.steps_per_epoch
    return math.ceil(config.epochs * pass_steps / config.validate_every), config.validate_every


def default_callbacks(model_dir, vocab, config, print_fn=print, writer=True, stoppers=()):
    """The standard callbacks of a run: backup, sampler, best checkpoint, stoppers, TensorBoard, history.

    Every file they write is written atomically (see `keras_textgen.backup`).
    `stoppers` (a `stopping.RunClock`, a `stopping.EarlyStopping`) keep their
    state in the backup. With `writer=False` (a non-chief worker of a
    multi-worker run) only the backup callback and the stoppers are kept; it
    writes nothing.
    """
    backup_cb = backup.StepBackupAndRestore(artifacts.path(model_dir, artifacts.BACKUP_DIR),
                                        save_freq=config.backup_every, double_checkpoint=True,
                                        delete_checkpoint=False, print_fn=print_fn if writer else None,
                                        resumable=stoppers)
    if not writer:
        return [backup_cb, *stoppers]
    return [
        backup_cb,  # first: see StepBackupAndRestore's docstring
        callbacks_lib.BitsPerTokenLogger(),  # before the progress bar, which prints its logs
        *stoppers,  # after the backup (which may clear stop_training at an epoch's end); the clock logs its time
        # Listed here so it ends the epoch's progress line before the samples
        # print (Keras otherwise appends its own progress bar after all callbacks).
        keras.callbacks.ProgbarLogger(),
        callbacks_lib.SampleCallback(vocab, prompts=config.sample_prompts, temperatures=(0.0, 0.8),
                                     max_length=config.sample_length, seed=config.seed or 0,
                                     print_fn=print_fn),
        backup.BestModelCheckpoint(best_checkpoint_path(model_dir), monitor="val_loss"),
        keras.callbacks.TensorBoard(artifacts.path(model_dir, artifacts.LOG_DIR), write_graph=False),
        backup.HistoryCSV(artifacts.path(model_dir, os.path.join(artifacts.RUN_DIR, artifacts.HISTORY_CSV))),
    ]


def best_checkpoint_path(model_dir):
    return artifacts.path(model_dir, os.path.join(artifacts.CHECKPOINT_DIR, "best.keras"))


def train(config, model_dir, print_fn=print, verbose="auto"):
    """Trains a model as `config` says and writes the model directory.

    If `model_dir` holds an unfinished run (a `run/` folder), training
    resumes from its last backup, at the epoch and step where it was taken;
    if it holds a finished model, it is only replaced with `config.force`.
    Bad input fails before anything is written.

    With `config.strategy` the model is built under the strategy's scope and
    `config.batch_size` is the batch of one replica: each step trains on a
    global batch of `batch_size * replicas` examples. Under a multi-worker
    strategy only the chief writes `model_dir`, which must be on storage
    every worker sees (the workers restore from its `backup/`).

    Returns:
        `(model, vocab, history_dict)`; the history is empty on a worker
        that is not the chief.
    """
    config.validate()
    # One run per model directory: a second one fails at once, naming this process (keras_textgen.lock).
    with lock.hold_directory(model_dir, "train") if distribute.writes_model_dir(config) else contextlib.nullcontext():
        return _train(config, model_dir, print_fn, verbose)


def _train(config, model_dir, print_fn, verbose):
    """`train`, with the model directory locked."""
    config.validate()
    model_dir = os.fspath(model_dir)
    # First of all, before any TensorFlow op runs: the thread pools, then a multi-worker strategy's collectives.
    threads.configure_threads(config.intra_op_threads)
    strategy = distribute.get_strategy(config.strategy)
    distribute.check_replicas(config, strategy.num_replicas_in_sync)
    writer = bool(getattr(strategy.extended, "should_checkpoint", True))
    run_dir = artifacts.path(model_dir, artifacts.RUN_DIR)
    backup_dir = artifacts.path(model_dir, artifacts.BACKUP_DIR)
    resuming = os.path.exists(os.path.join(run_dir, artifacts.VOCAB_FILE))
    if artifacts.is_model_dir(model_dir) and not resuming and not config.force:
        raise errors.ConfigError(f"{model_dir} already holds a trained model; pass --force to replace it")
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise errors.ConfigError(f"--out {model_dir} exists and is not a directory")
    for folder in (model_dir, run_dir, artifacts.path(model_dir, artifacts.CHECKPOINT_DIR)):
        if writer:
            io_utils.remove_stale_temporaries(folder)  # hidden files left by a killed run
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.strategy == "multi-worker" and config.time_budget:
        # Each worker's clock would stop it, and set its learning rate, at another step: the workers' steps must agree.
        print_fn("The time budget is off under --strategy multi-worker (the workers' clocks differ); "
                 "--epochs and --patience end the run")
        config = dataclasses.replace(config, time_budget=None)
    corpus, vocab, train_ds, val_ds, config, tokens, pass_steps = prepare(
        config, replicas=strategy.num_replicas_in_sync, workers=distribute.workers(config), print_fn=print_fn,
        strategy=strategy)
    fit_epochs, fit_steps = evaluation_plan(config, pass_steps)
    state = backup.read_state(backup_dir) if resuming else None
    steps_per_execution = steps_lib.for_run(config, fit_steps or pass_steps, state)
    if resuming:
        saved = Vocabulary.load(os.path.join(run_dir, artifacts.VOCAB_FILE))
        if saved.get_vocabulary() != vocab.get_vocabulary():
            raise errors.ConfigError(
                f"{run_dir} holds an unfinished run on another vocabulary; delete it or use another --out")
        print_fn(f"Resuming the unfinished run in {model_dir}")
    elif writer:
        # A new run: nothing of an earlier one may count, its best checkpoint included.
        for stale in (artifacts.BACKUP_DIR, artifacts.RUN_DIR, artifacts.CHECKPOINT_DIR):
            shutil.rmtree(artifacts.path(model_dir, stale), ignore_errors=True)
        os.makedirs(run_dir, exist_ok=True)
        vocab.save(os.path.join(run_dir, artifacts.VOCAB_FILE))
    if state and fit_steps is not None:
        # The repeated, seeded pipeline is one stream over all epochs: start it where the backup was
        # taken, so a resumed run sees the batches the uninterrupted run would have seen.
        train_ds = train_ds.skip(state["global_step"])
    run_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    run_config.update(mode=corpus.mode, corpus_name=corpus.name, vocab_size=vocab.size,
                      vocab_sha256=artifacts.vocab_fingerprint(vocab), train_tokens=tokens,
                      replicas=strategy.num_replicas_in_sync, streamed=corpus.streamed,
                      corpus_files=len(corpus.files), corpus_bytes=corpus.size_bytes,
                      global_batch_size=config.batch_size * strategy.num_replicas_in_sync,
                      intra_op_threads_in_force=tf.config.threading.get_intra_op_parallelism_threads(),
                      steps_per_execution_in_force=steps_per_execution)
    if writer:
        artifacts.save_json(run_config, run_dir, artifacts.CONFIG_FILE)

    total_steps = fit_epochs * (fit_steps or pass_steps)
    with strategy.scope():
        learning_rate = config.learning_rate
        if config.lr_schedule == "cosine":
            learning_rate = schedules.WarmupCosineDecay(config.learning_rate, total_steps=total_steps, floor=LR_FLOOR,
                                                        warmup_steps=min(WARMUP_STEPS, max(1, total_steps // 10)))
        model = model_lib.build_model(vocab, units=config.units, layers=config.layers, cell=config.cell,
                                      embedding_dim=config.embedding_dim or None, dropout=config.dropout,
                                      learning_rate=learning_rate, weight_decay=config.weight_decay)
    clock = stopping.RunClock(config.time_budget, progress=getattr(learning_rate, "progress", None))
    stoppers = [clock] + ([stopping.EarlyStopping(config.patience)] if config.patience else [])
    replicas = f", {strategy.num_replicas_in_sync} replicas" if strategy.num_replicas_in_sync > 1 else ""
    read = f"; {corpus.describe()}" if corpus.files else ""
    print_fn(f"Corpus {corpus.source!r} ({corpus.mode} mode{read}), {describe(config, tokens)}")
    print_fn(f"Vocabulary of {vocab.size} ids, model of {model.count_params():,} parameters{replicas}; "
             f"training until {_bounds(config, fit_epochs, fit_steps)}")
    ended = _ended(state, config) if state else None
    if ended:
        print_fn(f"The run had already ended ({ended}); writing its model")
        model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(backup_dir, state["weights"]))
    else:
        patches = (_compat.distributed_fit(model, strategy, train_ds.element_spec)
                   if config.strategy not in (None, "default") else contextlib.nullcontext())
        with steps_lib.steps_per_call(model, steps_per_execution), patches:
            model.fit(train_ds, validation_data=val_ds, epochs=fit_epochs, steps_per_epoch=fit_steps,
                      validation_steps=config.validation_steps, verbose=verbose,
                      shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a Dataset
                      callbacks=default_callbacks(model_dir, vocab, config, print_fn=print_fn, writer=writer,
                                                  stoppers=stoppers))
    if not writer:
        return model, vocab, {}  # the chief writes the history
    state = backup.read_state(backup_dir) or state or {}
    run_config.update(stopped_by=_ended(state, config) or "epochs", train_seconds=state.get("train_seconds"))
    history = history_lib.read_history(os.path.join(run_dir, artifacts.HISTORY_CSV))
    finish(model, vocab, run_config, history, model_dir)
    return model, vocab, history


def _bounds(config, fit_epochs, fit_steps):
    """What ends the run, in words: e.g. '100 epochs, a budget of 5m 0s, 5 evaluations without improvement'."""
    parts = [f"{config.epochs} epochs" + (f" ({fit_epochs} evaluations of {fit_steps} steps)"
                                          if config.validate_every else "")]
    if config.time_budget:
        parts.append(f"a time budget of {stopping.format_duration(config.time_budget)}")
    if config.patience:
        parts.append(f"{config.patience} evaluations without improvement")
    return ", ".join(parts) + ", whichever comes first"


def _ended(state, config):
    """Why the run whose backup `state` is had ended: 'early stop', 'time budget', or None (it had not)."""
    if (state.get("early_stopping") or {}).get("stopped"):
        return "early stop"
    if config.time_budget and state.get("train_seconds", 0.0) >= config.time_budget:
        return "time budget"
    return None


def finish(model, vocab, run_config, history, model_dir):
    """Puts the best evaluation's weights in `model`, then writes the finished run's files; drops the run state.

    The finished model is the one with the lowest validation loss of the
    run (`checkpoints/best.keras`, kept across restarts), not the last one:
    `history.json` keeps every evaluation and names the best under `best`.
    Each file is written atomically, the model last. A kill at any point is
    safe: until `model.keras` is in place the run is unfinished and resumes
    from its final backup (no epoch is trained again); `run/` is removed
    before `backup/`, so a finished model never looks unfinished.
    """
    best = restore_best(model, model_dir)
    for key in ("loss", "val_loss"):
        if history.get(key):
            history[key.replace("loss", "bits_per_token")] = [model_lib.bits(v) for v in history[key]]
    if best:
        history["best"] = best
    history["stopped_by"] = run_config.get("stopped_by")
    run_config["best"] = best
    vocab.save(artifacts.path(model_dir, artifacts.VOCAB_FILE))
    artifacts.save_json(run_config, model_dir, artifacts.CONFIG_FILE)
    artifacts.save_json(history, model_dir, artifacts.HISTORY_FILE)
    if history.get("epoch"):
        history_lib.plot_history(history, artifacts.path(model_dir, artifacts.PLOT_FILE))
    artifacts.save_model(model, model_dir)
    generator_cache.save(model_dir)  # after model.keras: a kill in between only costs `generate` a trace
    shutil.rmtree(artifacts.path(model_dir, artifacts.RUN_DIR), ignore_errors=True)
    shutil.rmtree(artifacts.path(model_dir, artifacts.BACKUP_DIR), ignore_errors=True)


def restore_best(model, model_dir):
    """Loads the weights of the run's best evaluation into `model`, if it has one.

    Returns:
        `{"epoch", "step", "val_loss", "val_bits_per_token"}` of that
        evaluation (`epoch` counts evaluations from 1), or `None`.
    """
    path = best_checkpoint_path(model_dir)
    try:
        with open(os.path.splitext(path)[0] + ".json", encoding="utf-8") as f:
            saved = json.load(f)
        value = float(saved["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not os.path.isfile(path) or not math.isfinite(value):
        return None
    model.load_weights(path)
    return {"epoch": saved.get("epoch"), "step": saved.get("step"), "val_loss": value,
            "val_bits_per_token": model_lib.bits(value)}
