"""The training job behind `keras-textgen train`: corpus -> vocab -> datasets -> fit -> model dir.

Python users who want `model.fit` in plain sight should read `pipelines/`;
this module packages the same steps with the standard Keras callbacks and
the crash-safe model directory of `keras_textgen.artifacts`.
"""

import csv
import dataclasses
import math
import os
import shutil

import keras
import tensorflow as tf

from keras_textgen import artifacts
from keras_textgen import callbacks as callbacks_lib
from keras_textgen import corpus as corpus_lib
from keras_textgen import data as data_lib
from keras_textgen import errors
from keras_textgen import io_utils
from keras_textgen import model as model_lib
from keras_textgen.vocab import Vocabulary


@dataclasses.dataclass
class TrainConfig:
    """Everything `train` needs; the CLI flags map one to one onto these fields."""

    corpus: str = "python-docs"
    level: str = "char"
    mode: str = None
    column: str = None
    data_dir: str = None
    manual_dir: str = None
    epochs: int = 5
    steps_per_epoch: int = None
    validation_steps: int = None
    batch_size: int = 64
    seq_len: int = 100
    max_line_length: int = data_lib.DEFAULT_MAX_LENGTH
    units: int = 256
    layers: int = 1
    cell: str = "lstm"
    embedding_dim: int = None
    dropout: float = 0.0
    learning_rate: float = 5e-3
    max_tokens: int = None
    min_frequency: int = 1
    lowercase: bool = False
    seed: int = None
    backup_every: int = 50
    sample_prompts: tuple = ("",)
    sample_length: int = 120
    strategy: str = None
    force: bool = False

    def validate(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "seq_len": self.seq_len,
                    "units": self.units, "layers": self.layers, "backup_every": self.backup_every,
                    "max_line_length": self.max_line_length}
        for name in ("steps_per_epoch", "validation_steps", "embedding_dim", "max_tokens"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise errors.ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.level not in ("char", "word"):
            raise errors.ConfigError(f"level must be 'char' or 'word', got {self.level!r}")
        if self.mode not in (None, "lines", "chunks"):
            raise errors.ConfigError(f"mode must be 'lines' or 'chunks', got {self.mode!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise errors.ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise errors.ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.min_frequency < 1:
            raise errors.ConfigError(f"min_frequency must be >= 1, got {self.min_frequency!r}")


def prepare(config):
    """Loads the corpus, adapts the vocabulary and builds train/validation datasets.

    Returns:
        `(corpus, vocab, train_ds, val_ds)`.
    """
    corpus = corpus_lib.load(config.corpus, mode=config.mode, column=config.column,
                             data_dir=config.data_dir, manual_dir=config.manual_dir)
    vocab = Vocabulary.adapt(corpus.train, level=config.level, max_tokens=config.max_tokens,
                             min_frequency=config.min_frequency, lowercase=config.lowercase)
    common = dict(vocab=vocab, mode=corpus.mode, batch_size=config.batch_size, seq_len=config.seq_len,
                  max_length=config.max_line_length, seed=config.seed)
    repeat = config.steps_per_epoch is not None
    train_ds = data_lib.make_dataset(corpus.train, repeat=repeat, **common)
    val_ds = data_lib.with_known_cardinality(data_lib.make_dataset(corpus.validation, shuffle=False, **common))
    has_examples = {"validation": int(val_ds.cardinality()) > 0}
    if repeat:  # an endless dataset: look at one batch of an unrepeated twin
        twin = data_lib.make_dataset(corpus.train, cache=False, shuffle=False, **common)
        has_examples["training"] = any(True for _ in twin.take(1))
    else:
        train_ds = data_lib.with_known_cardinality(train_ds)
        has_examples["training"] = int(train_ds.cardinality()) > 0
    for name, ok in has_examples.items():
        if not ok:
            hint = (f" (shorter than one window of seq_len+1={config.seq_len + 1} tokens; lower --seq-len)"
                    if corpus.mode == "chunks" else "")
            raise errors.DataError(f"the {name} split of {config.corpus!r} yields no examples{hint}")
    return corpus, vocab, train_ds, val_ds


def default_callbacks(model_dir, vocab, config, print_fn=print):
    """The standard callbacks of a run: sampler, checkpoint, backup, TensorBoard, CSV history."""
    return [
        callbacks_lib.BitsPerTokenLogger(),
        callbacks_lib.SampleCallback(vocab, prompts=config.sample_prompts, temperatures=(0.0, 0.8),
                                     max_length=config.sample_length, seed=config.seed or 0,
                                     print_fn=print_fn),
        keras.callbacks.ModelCheckpoint(artifacts.path(model_dir, os.path.join(artifacts.CHECKPOINT_DIR,
                                                                                "best.keras")),
                                        monitor="val_loss", save_best_only=True),
        keras.callbacks.BackupAndRestore(artifacts.path(model_dir, artifacts.BACKUP_DIR),
                                         save_freq=config.backup_every, double_checkpoint=True),
        keras.callbacks.TensorBoard(artifacts.path(model_dir, artifacts.LOG_DIR), write_graph=False),
        keras.callbacks.CSVLogger(artifacts.path(model_dir, os.path.join(artifacts.RUN_DIR, artifacts.HISTORY_CSV)),
                                  append=True),
    ]


def read_history(csv_path):
    """Per-epoch logs from the CSV logger; a resumed epoch's last row wins."""
    if not os.path.exists(csv_path):
        return {}
    rows = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
            except (KeyError, ValueError):
                continue  # a row cut short by a crash
    history = {"epoch": [e + 1 for e in sorted(rows)]}
    for e in sorted(rows):
        for k, v in rows[e].items():
            history.setdefault(k, []).append(v)
    return history


def plot_history(history, png_path):
    """Writes the train/validation loss curves (bits per token) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            ax.plot(history["epoch"], [model_lib.bits(v) for v in history[key]], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per token")
    ax.set_title("keras_textgen training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with io_utils.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def train(config, model_dir, print_fn=print, verbose="auto"):
    """Trains a model as `config` says and writes the model directory.

    If `model_dir` holds an unfinished run (a `backup/` folder), training
    resumes from its last backup; if it holds a finished model, it is only
    replaced with `config.force`. Bad input fails before anything is written.

    Returns:
        `(model, vocab, history_dict)`.
    """
    config.validate()
    model_dir = os.fspath(model_dir)
    run_dir = artifacts.path(model_dir, artifacts.RUN_DIR)
    resuming = os.path.exists(os.path.join(run_dir, artifacts.VOCAB_FILE))
    if artifacts.is_model_dir(model_dir) and not resuming and not config.force:
        raise errors.ConfigError(f"{model_dir} already holds a trained model; pass --force to replace it")
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise errors.ConfigError(f"--out {model_dir} exists and is not a directory")
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    corpus, vocab, train_ds, val_ds = prepare(config)
    if resuming:
        saved = Vocabulary.load(os.path.join(run_dir, artifacts.VOCAB_FILE))
        if saved.get_vocabulary() != vocab.get_vocabulary():
            raise errors.ConfigError(
                f"{run_dir} holds an unfinished run on another vocabulary; delete it or use another --out")
        print_fn(f"Resuming the unfinished run in {model_dir}")
    else:
        for stale in (artifacts.BACKUP_DIR, artifacts.RUN_DIR):
            shutil.rmtree(artifacts.path(model_dir, stale), ignore_errors=True)
        os.makedirs(run_dir, exist_ok=True)
        vocab.save(os.path.join(run_dir, artifacts.VOCAB_FILE))
    run_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    run_config.update(mode=corpus.mode, corpus_name=corpus.name, vocab_size=vocab.size)
    artifacts.save_json(run_config, run_dir, artifacts.CONFIG_FILE)

    strategy = get_strategy(config.strategy)
    with strategy.scope():
        model = model_lib.build_model(vocab, units=config.units, layers=config.layers, cell=config.cell,
                                      embedding_dim=config.embedding_dim, dropout=config.dropout,
                                      learning_rate=config.learning_rate)
    print_fn(f"Corpus {corpus.source!r} ({corpus.mode} mode), vocabulary of {vocab.size} ids, "
             f"model of {model.count_params():,} parameters")
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
              validation_steps=config.validation_steps, verbose=verbose,
              shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a Dataset
              callbacks=default_callbacks(model_dir, vocab, config, print_fn=print_fn))
    history = read_history(os.path.join(run_dir, artifacts.HISTORY_CSV))
    finish(model, vocab, run_config, history, model_dir)
    return model, vocab, history


def finish(model, vocab, run_config, history, model_dir):
    """Writes the finished run's files, each atomically, the model last."""
    for key in ("loss", "val_loss"):
        if history.get(key):
            history[key.replace("loss", "bits_per_token")] = [model_lib.bits(v) for v in history[key]]
    vocab.save(artifacts.path(model_dir, artifacts.VOCAB_FILE))
    artifacts.save_json(run_config, model_dir, artifacts.CONFIG_FILE)
    artifacts.save_json(history, model_dir, artifacts.HISTORY_FILE)
    if history.get("epoch"):
        plot_history(history, artifacts.path(model_dir, artifacts.PLOT_FILE))
    artifacts.save_model(model, model_dir)
    shutil.rmtree(artifacts.path(model_dir, artifacts.RUN_DIR), ignore_errors=True)


def get_strategy(name):
    """`None`/"default" -> the default strategy; "mirrored"; "multi-worker" (reads `TF_CONFIG`)."""
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise errors.ConfigError(f"strategy must be 'mirrored' or 'multi-worker', got {name!r}")
