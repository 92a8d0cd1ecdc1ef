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

import keras
import tensorflow as tf

from keras_textgen import _compat
from keras_textgen import artifacts
from keras_textgen import backup
from keras_textgen import callbacks as callbacks_lib
from keras_textgen import distribute
from keras_textgen import errors
from keras_textgen import generator_cache
from keras_textgen import history as history_lib
from keras_textgen import io_utils
from keras_textgen import lock
from keras_textgen import model as model_lib
from keras_textgen import preparation
from keras_textgen import schedules
from keras_textgen import steps as steps_lib
from keras_textgen import stopping
from keras_textgen import threads
from keras_textgen.vocab import Vocabulary


# The dataclass lives in keras_textgen.config (no TensorFlow import: the CLI reads its defaults).
from keras_textgen.config import DEFAULT_TIME_BUDGET, SCHEDULES, TrainConfig  # noqa: E402,F401

WARMUP_STEPS = 100  # at most; a tenth of a shorter run
LR_FLOOR = 0.1  # the schedule's last learning rate, as a fraction of its peak


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
        *([callbacks_lib.SampleCallback(vocab, prompts=config.sample_prompts, temperatures=(0.0, 0.8),
                                        max_length=config.sample_length, seed=config.seed or 0,
                                        print_fn=print_fn)] if config.sample_prompts else []),
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
    corpus, vocab, train_ds, val_ds, config, tokens, pass_steps, targets_per_sequence = preparation.prepare(
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
                      targets_per_sequence=targets_per_sequence,
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
                                      recurrent_dropout=config.recurrent_dropout,
                                      learning_rate=learning_rate, weight_decay=config.weight_decay,
                                      targets_per_sequence=targets_per_sequence)
    clock = stopping.RunClock(config.time_budget, progress=getattr(learning_rate, "progress", None))
    stoppers = [clock] + ([stopping.EarlyStopping(config.patience)] if config.patience else [])
    replicas = f", {strategy.num_replicas_in_sync} replicas" if strategy.num_replicas_in_sync > 1 else ""
    read = f"; {corpus.describe()}" if corpus.files else ""
    print_fn(f"Corpus {corpus.source!r} ({corpus.mode} mode{read}), {preparation.describe(config, tokens)}")
    print_fn(f"Vocabulary of {vocab.size} ids, model of {model.count_params():,} parameters{replicas}; "
             f"training until {_bounds(config, fit_epochs, fit_steps)}")
    ended = _ended(state, config) if state else None
    if ended:
        print_fn(f"The run had already ended ({ended}); writing its model")
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
    if run_config["keep_generator"]:
        generator_cache.save(model_dir)  # after model.keras: a kill in between only costs `generate` a trace
    else:  # a --force run's earlier loop would be stale
        shutil.rmtree(artifacts.path(model_dir, generator_cache.GENERATOR_DIR), ignore_errors=True)
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
