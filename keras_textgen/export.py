"""Export a trained model for TensorFlow Serving (SavedModel) and for devices (TFLite / LiteRT).

SavedModel layout, as TensorFlow Serving expects it::

    saved_models/<name>/<version>/saved_model.pb, variables/, assets/

Serving watches `saved_models/<name>/` and serves the highest integer
version. A version is written to a hidden temporary folder and renamed into
place when complete, so a watching server never sees half a model. A hidden
folder left by a killed export is never taken for a version, and the next
export removes it (`io_utils.remove_stale_temporaries`).

TFLite files::

    saved_models/<name>.tflite            float32
    saved_models/<name>.int8.tflite       dynamic-range quantized (int8 weights)
    saved_models/<name>.float16.tflite    float16 weights
    saved_models/<name>.vocab.json        the vocabulary (also inside each .tflite)
"""

import json
import os
import re

import tensorflow as tf

from keras_textgen import artifacts
from keras_textgen import errors
from keras_textgen import generation
from keras_textgen import io_utils
from keras_textgen import lock
from keras_textgen import vocab as vocab_lib

DEFAULT_BASE_DIR = "saved_models"
QUANTIZATIONS = {"none": "", "dynamic": ".int8", "float16": ".float16"}
DEFAULT_MAX_LENGTH = 200


def state_names(generator):
    """`h_0, c_0, h_1, c_1, ...` (LSTM) or `h_0, h_1, ...` (GRU): the state tensor names."""
    names = []
    for i, shapes in enumerate(generator.state_shapes):
        names += [f"{kind}_{i}" for kind in ("h", "c")[:len(shapes)]]
    return names


class GenerateModule(generation.TextGenerator):
    """The generation loop alone, as the `serve` function of the SavedModel.

    `serve`: `prompt` string `[batch]`, `max_length` int32, `temperature`
    float32, `top_k` int32, `top_p` float32, `seed` int64 (scalars with
    defaults 200, 1.0, 0, 1.0, 0) -> `text` string `[batch]`, `tokens` int32
    `[batch, max_length]`, `lengths` int32 `[batch]`. `ServingModule` adds
    the other signatures; `keras_textgen.generator_cache` saves this one.
    """

    def __init__(self, model, vocab, name="keras_textgen"):
        super().__init__(model, vocab, name=name)

        @tf.function(autograph=False, input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int64, name="seed")])
        def serve(prompt, max_length=tf.constant(DEFAULT_MAX_LENGTH), temperature=tf.constant(1.0),
                  top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64)):
            return self.generate(prompt, max_length, temperature, top_k, top_p, seed)

        self.serve = serve


class ServingModule(GenerateModule):
    """The exported SavedModel: text in, text out, with the vocabulary inside.

    Signatures:
        `serving_default`: `GenerateModule.serve`: `prompt` string `[batch]`,
            `max_length` int32, `temperature` float32, `top_k` int32, `top_p`
            float32, `seed` int64 (scalars with defaults 200, 1.0, 0, 1.0, 0)
            -> `text` string `[batch]`, `tokens` int32 `[batch, max_length]`,
            `lengths` int32 `[batch]`.
        `score`: `text` string `[batch]` -> `log_likelihood`, `bits_per_char`
            float32 `[batch]`, `num_tokens` int32 `[batch]`.
        `step`: `tokens` int32 `[batch]` and the states (`h_0`, `c_0`, ...
            float32 `[batch, units]`) -> `logits` float32 `[batch, V]` and the
            new states under the same names.
        `vocabulary`: no inputs -> `tokens` string `[V]` (index = id) and the
            reserved ids `pad_id`, `oov_id`, `eos_id`.
    """

    def __init__(self, model, vocab):
        super().__init__(model, vocab)
        self.tokens = tf.constant(vocab.get_vocabulary())
        units = [u for shapes in self.state_shapes for u in shapes]
        names = state_names(self)

        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def score(text):
            return self.score(text)

        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.int32, name="tokens")] +
                     [tf.TensorSpec([None, u], tf.float32, name=n) for u, n in zip(units, names)])
        def step(tokens, *states):
            logits, new_states = self.step(tokens, list(states))
            return {"logits": logits, **dict(zip(names, new_states))}

        @tf.function(autograph=False, input_signature=[])
        def vocabulary():
            return {"tokens": self.tokens, "pad_id": tf.constant(vocab_lib.PAD_ID),
                    "oov_id": tf.constant(vocab_lib.OOV_ID), "eos_id": tf.constant(vocab_lib.EOS_ID)}

        self.score_fn, self.step_fn, self.vocabulary = score, step, vocabulary

    def signatures(self):
        return {"serving_default": self.serve, "score": self.score_fn, "step": self.step_fn,
                "vocabulary": self.vocabulary}


def _load(model_or_dir, vocab):
    if vocab is None:
        model, vocab, _ = artifacts.load_model_dir(model_or_dir, compile=False)
        return model, vocab
    return model_or_dir, vocab


def _default_name(model_or_dir):
    if isinstance(model_or_dir, (str, os.PathLike)):
        return os.path.basename(os.path.normpath(os.fspath(model_or_dir))) or "model"
    return "model"


def _check_name(name):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise errors.ConfigError(f"export name must be letters, digits, '.', '_' or '-', got {name!r}")
    return name


def versions(base_dir, name):
    """The integer versions already exported under `base_dir/name`, sorted."""
    folder = os.path.join(os.fspath(base_dir), name)
    if not os.path.isdir(folder):
        return []
    return sorted(int(d) for d in os.listdir(folder) if d.isdigit() and os.path.isdir(os.path.join(folder, d)))


def export_saved_model(model_or_dir, vocab=None, base_dir=DEFAULT_BASE_DIR, name=None, version=None, force=False):
    """Writes a SavedModel for TensorFlow Serving to `base_dir/name/version/`.

    Args:
        model_or_dir: a model directory written by `train`, or a Keras model
            (then pass `vocab`).
        vocab: the `Vocabulary` when `model_or_dir` is a model.
        base_dir: the model base path (default `saved_models`).
        name: the served model name (default: the model directory's name).
        version: a positive integer; default: the highest existing + 1.
        force: replace an existing version.

    Returns:
        The path of the new version folder.

    Example:

    >>> path = export_saved_model("runs/python-docs", name="python-docs")
    >>> loaded = tf.saved_model.load(path)
    >>> loaded.signatures["serving_default"](prompt=tf.constant(["def "]), max_length=tf.constant(50),
    ...     temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
    ...     seed=tf.constant(0, tf.int64))["text"]
    """
    name = _check_name(name or _default_name(model_or_dir))
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise errors.ConfigError(f"version must be a positive integer (TF Serving ignores other names), got {version!r}")
    with _export_lock(base_dir, name):  # two exports at once would pick the same version
        return _export_saved_model(model_or_dir, vocab, base_dir, name, version, force)


def _export_lock(base_dir, name):
    """One export of `name` at a time: `base_dir/.<name>.lock` (see keras_textgen.lock)."""
    base_dir = os.fspath(base_dir)
    _check_writable(base_dir)
    return lock.hold(os.path.join(base_dir, f".{name}.lock"), "export", target=os.path.join(base_dir, name))


def _export_saved_model(model_or_dir, vocab, base_dir, name, version, force):
    existing = versions(base_dir, name)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    target = os.path.join(os.fspath(base_dir), name, str(version))
    if os.path.exists(target) and not force:
        raise errors.ConfigError(f"{target} already exists; pass --force to replace it or choose another --version")
    model, vocab = _load(model_or_dir, vocab)
    module = ServingModule(model, vocab)
    _check_writable(os.path.dirname(target))
    io_utils.remove_stale_temporaries(os.path.dirname(target))  # hidden folders left by a killed export
    with io_utils.atomic_directory(target, overwrite=force) as tmp:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
    return target


def _check_writable(folder):
    """Fails early, before any conversion, if `folder` cannot be created or written."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise errors.ConfigError(f"cannot write to {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise errors.ConfigError(f"cannot write to {probe}: permission denied")


class LiteModule(tf.Module):
    """The functions converted to TFLite: `step`, `prime` and `vocab`.

    Only built-in TFLite ops are used: a Keras `LSTM` over a whole sequence
    would convert to TensorList ops that need Flex, so the cells are called
    one step at a time with the states as explicit inputs and outputs.
    Masking is not needed on device: generation feeds real tokens only, and
    `prime` treats pad ids as "keep the state", as the Keras mask does.
    """

    def __init__(self, model, vocab):
        super().__init__(name="keras_textgen_lite")
        # The generator tracks the model's tf.Variables, which is what lets the
        # converter freeze them (Keras variables alone are silently dropped).
        gen = self.generator = generation.TextGenerator(model, vocab)
        names = state_names(gen)
        units = [u for shapes in gen.state_shapes for u in shapes]
        meta = {**vocab.get_config(), "states": names, "state_units": units, "format": "keras_textgen.tflite/1"}
        self.vocab_json = json.dumps(meta, ensure_ascii=False)
        vocab_bytes = tf.constant(list(self.vocab_json.encode("utf-8")), dtype=tf.uint8)
        state_specs = [tf.TensorSpec([None, u], tf.float32, name=n) for u, n in zip(units, names)]

        @tf.function(autograph=False,
                     input_signature=[tf.TensorSpec([None, 1], tf.int32, name="token")] + state_specs)
        def step(token, *states):
            logits, new_states = gen.step(token[:, 0], list(states))
            return {"logits": logits, **dict(zip(names, new_states))}

        @tf.function(autograph=False,
                     input_signature=[tf.TensorSpec([None, None], tf.int32, name="tokens")] + state_specs)
        def prime(tokens, *states):
            steps = tf.shape(tokens)[1]
            logits = tf.zeros([tf.shape(tokens)[0], gen.vocab_size])
            decoder = gen.decoder()  # its weights laid out once, outside the loop

            def body(t, logits, states):
                new_logits, new_states = decoder.step(tokens[:, t], list(states))
                keep = tf.not_equal(tokens[:, t], vocab_lib.PAD_ID)[:, None]
                states = [tf.where(keep, n, o) for n, o in zip(new_states, states)]
                return t + 1, tf.where(keep, new_logits, logits), states

            _, logits, states = tf.while_loop(lambda t, *_: t < steps, body, (0, logits, list(states)))
            return {"logits": logits, **dict(zip(names, states))}

        def vocab_fn():
            return {"vocab_json_utf8": vocab_bytes}

        vocab_fn.__name__ = "vocab"  # the TFLite signature key is the function's name
        self.functions = {"step": step, "prime": prime,
                          "vocab": tf.function(vocab_fn, input_signature=[], autograph=False)}


def tflite_paths(base_dir, name):
    """`{quantize: path}` of the TFLite files of `name`, plus `"vocab"`."""
    paths = {q: os.path.join(os.fspath(base_dir), f"{name}{suffix}.tflite") for q, suffix in QUANTIZATIONS.items()}
    paths["vocab"] = os.path.join(os.fspath(base_dir), f"{name}.vocab.json")
    return paths


def convert_tflite(model, vocab, quantize="none"):
    """Converts to a TFLite flatbuffer (bytes) with built-in ops only."""
    if quantize not in QUANTIZATIONS:
        raise errors.ConfigError(f"quantize must be one of {sorted(QUANTIZATIONS)}, got {quantize!r}")
    module = LiteModule(model, vocab)
    functions = [module.functions[k].get_concrete_function() for k in ("step", "prime", "vocab")]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert(), module.vocab_json


def export_tflite(model_or_dir, vocab=None, base_dir=DEFAULT_BASE_DIR, name=None, quantize="none"):
    """Writes `base_dir/<name>[.int8|.float16].tflite` and `<name>.vocab.json`.

    Args:
        model_or_dir: a model directory, or a Keras model (then pass `vocab`).
        vocab: the `Vocabulary` when `model_or_dir` is a model.
        base_dir: output folder (default `saved_models`).
        name: file name stem (default: the model directory's name).
        quantize: `"none"` (float32), `"dynamic"` (int8 weights) or `"float16"`.

    Returns:
        The path of the `.tflite` file.

    Example:

    >>> path = export_tflite("runs/python-docs", name="python-docs", quantize="dynamic")
    >>> LiteGenerator(path).generate("def ", max_length=50, temperature=0)
    """
    name = _check_name(name or _default_name(model_or_dir))
    if quantize not in QUANTIZATIONS:
        raise errors.ConfigError(f"quantize must be one of {sorted(QUANTIZATIONS)}, got {quantize!r}")
    model, vocab = _load(model_or_dir, vocab)
    _check_writable(os.fspath(base_dir))
    flatbuffer, vocab_json = convert_tflite(model, vocab, quantize)
    with _export_lock(base_dir, name):
        return _write_tflite(base_dir, name, quantize, flatbuffer, vocab_json)


def _write_tflite(base_dir, name, quantize, flatbuffer, vocab_json):
    paths = tflite_paths(base_dir, name)
    io_utils.remove_stale_temporaries(base_dir)  # hidden files left by a killed export
    with io_utils.atomic_path(paths[quantize]) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
    io_utils.atomic_write_text(paths["vocab"], vocab_json)
    return paths[quantize]
