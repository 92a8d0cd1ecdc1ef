"""The model directory: what `train` writes and `load_model_dir` reads back.

    MODEL_DIR/
      model.keras       the trained Keras model (written last, atomically)
      vocab.json        the Vocabulary with its reserved ids
      config.json       how it was trained (corpus, level, mode, sizes, seed)
      history.json      per-epoch loss / bits per token, train and validation
      history.png       the loss curves
      checkpoints/      best.keras, the model with the best validation loss, and
                        best.json, its {monitor, value, epoch} (kept across restarts)
      backup/           keras_textgen.backup.StepBackupAndRestore while a run is unfinished:
                        training_metadata.json (epoch, step, global step, weights file)
                        and ckpt-<global step>.weights.h5 (weights + optimizer state),
                        the current one and the previous one (removed at the end)
      run/              the unfinished run's vocab.json, config.json and history.csv
                        (removed at the end, before backup/)
      logs/             TensorBoard logs (event files are appended, not atomic)
      generator/        the traced generation loop as a SavedModel, which `generate`
                        loads instead of tracing it (keras_textgen.generator_cache)

Every other file is written to a hidden temporary name and renamed, so a
crash never leaves a half-written file where a finished one is expected.
`config.json` records `vocab_sha256`, the fingerprint of the vocabulary the
model was trained with; `load_model_dir` refuses a `vocab.json` that differs.
"""

import hashlib
import json
import os
import zipfile

import keras

from keras_textgen import custom_objects
from keras_textgen import errors
from keras_textgen import io_utils
from keras_textgen.vocab import Vocabulary

MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
PLOT_FILE = "history.png"
CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"
RUN_DIR = "run"
HISTORY_CSV = "history.csv"
LOG_DIR = "logs"


def path(model_dir, name):
    return os.path.join(os.fspath(model_dir), name)


def is_model_dir(model_dir):
    return os.path.isfile(path(model_dir, MODEL_FILE))


def vocab_fingerprint(vocab):
    """SHA-256 of the vocabulary's level, lowercasing and tokens (id order): what the model's ids mean."""
    payload = json.dumps([vocab.level, vocab.lowercase, vocab.get_vocabulary()], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def save_model(model, model_dir):
    with io_utils.atomic_path(path(model_dir, MODEL_FILE)) as tmp:
        model.save(tmp)


def save_json(obj, model_dir, name):
    io_utils.atomic_write_text(path(model_dir, name), json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def load_json(model_dir, name, default=None):
    p = path(model_dir, name)
    if not os.path.exists(p):
        if default is not None:
            return default
        raise errors.ArtifactError(f"missing file: {p}")
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, OSError) as e:
        raise errors.ArtifactError(f"{p} is not valid JSON ({e})") from None


def load(model_dir, compile=True):
    """Loads `(model, vocab)` from a model directory (`model.keras` and `vocab.json`), with clear errors.

    It works on what `keras-textgen train` writes and on a folder where a script
    saved `model.save(DIR/"model.keras")` and `vocab.save(DIR/"vocab.json")`.

    Example:

    >>> model, vocab = keras_textgen.load("runs/python-docs")
    >>> keras_textgen.generate(model, vocab, ["def "], max_length=40)
    """
    model, vocab, _ = load_model_dir(model_dir, compile=compile)
    return model, vocab


def load_model_dir(model_dir, compile=True):
    """Loads `(model, vocab, config)` from a model directory, with clear errors.

    Example:

    >>> model, vocab, config = load_model_dir("runs/python-docs")
    """
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise errors.ArtifactError(f"model directory not found: {model_dir}")
    model_path = path(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise errors.ArtifactError(f"{model_dir} is not a keras_textgen model directory (no {MODEL_FILE})")
    vocab = Vocabulary.load(path(model_dir, VOCAB_FILE))
    if not zipfile.is_zipfile(model_path):
        raise errors.ArtifactError(f"{model_path} is truncated or not a Keras model file")
    try:
        custom_objects.register()
        model = keras.saving.load_model(model_path, compile=compile)
    except Exception as e:  # Keras raises many kinds for corrupt archives
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise errors.ArtifactError(f"cannot load {model_path}: {first}") from None
    if model.output_shape[-1] != vocab.size:
        raise errors.ArtifactError(
            f"{path(model_dir, VOCAB_FILE)} has {vocab.size} ids but {model_path} predicts "
            f"{model.output_shape[-1]}: the vocabulary does not belong to this model")
    config = load_json(model_dir, CONFIG_FILE, default={})
    expected = config.get("vocab_sha256") if isinstance(config, dict) else None
    if expected and expected != vocab_fingerprint(vocab):
        raise errors.ArtifactError(
            f"{path(model_dir, VOCAB_FILE)} is not the vocabulary {model_path} was trained with "
            f"(its fingerprint differs from vocab_sha256 in {path(model_dir, CONFIG_FILE)})")
    return model, vocab, config
