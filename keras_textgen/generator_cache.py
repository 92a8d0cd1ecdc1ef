"""The traced generation loop kept in the model directory, so `generate` loads it instead of tracing it.

Tracing the generation loop (`TextGenerator.generate` as one `tf.function`)
takes seconds: longer than writing a few hundred characters. `train` keeps
the traced loop beside the model (unless `--no-generator`,
`TrainConfig(keep_generator=False)`), as a SavedModel with one signature, the
`serving_default` of the TF Serving export:

    MODEL_DIR/generator/   saved_model.pb, variables/, keras_textgen.json

`keras_textgen.json` holds the SHA-256 of the `model.keras`, `vocab.json`
and `config.json` it was traced from; `load` returns `None` when they differ (a model file
replaced by hand, a generator older than its model), and `keras-textgen
generate` then traces as it would without the cache. Deleting the folder
costs only time. The text is the same either way: it is the graph that
`generation.generate` runs (without `jit_compile`) and the SavedModel serves.

Example:

>>> generate_fn = generator_cache.load("runs/python-docs")  # None if absent or stale
>>> generation.run_generate_fn(generate_fn, ["def "], max_length=50, temperature=0.0, top_k=0, top_p=1.0, seed=0)
"""

import hashlib
import json
import os

import tensorflow as tf

from keras_textgen import artifacts

GENERATOR_DIR = "generator"
STAMP_FILE = "keras_textgen.json"
# config.json is included so that a damaged directory gets `load_model_dir`'s clear error rather than text.
_SOURCES = (artifacts.MODEL_FILE, artifacts.VOCAB_FILE, artifacts.CONFIG_FILE)


def _fingerprints(model_dir):
    out = {}
    for name in _SOURCES:
        digest = hashlib.sha256()
        with open(os.path.join(model_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[name] = digest.hexdigest()
    return out


def save(model_dir):
    """Writes `MODEL_DIR/generator/` for the `model.keras`, `vocab.json` and `config.json` in `model_dir`.

    The model is loaded from its file, so the saved loop holds plain
    variables whatever `tf.distribute` strategy trained it.
    """
    from keras_textgen import export
    from keras_textgen import io_utils

    model, vocab, _ = artifacts.load_model_dir(model_dir, compile=False)
    module = export.GenerateModule(model, vocab)
    with io_utils.atomic_directory(os.path.join(model_dir, GENERATOR_DIR), overwrite=True) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        io_utils.atomic_write_text(os.path.join(tmp, STAMP_FILE), json.dumps(_fingerprints(model_dir)) + "\n")


ARG_NAMES = ("prompt", "max_length", "temperature", "top_k", "top_p", "seed")


def load(model_dir):
    """`MODEL_DIR/generator/`'s loop as `fn(prompt, max_length, temperature, top_k, top_p, seed)`, or `None`.

    `None` when the folder is missing or stale (see the module docstring).
    """
    folder = os.path.join(os.fspath(model_dir), GENERATOR_DIR)
    try:
        with open(os.path.join(folder, STAMP_FILE), encoding="utf-8") as f:
            stamp = json.load(f)
        if stamp != _fingerprints(model_dir):
            return None
        serve = tf.saved_model.load(folder).signatures["serving_default"]
    except Exception:  # noqa: BLE001 - a cache: whatever is wrong with it, tracing the loop is the answer
        return None
    return lambda *args: serve(**dict(zip(ARG_NAMES, args)))
