"""keras_textgen: generative recurrent text models from tf.data to Serving and TFLite.

The shape of every use is corpus -> vocabulary -> dataset -> Sequential
model -> `model.fit` -> generate:

```python
import keras_textgen as ktg

corpus = ktg.corpus.load("python-docs")
vocab = ktg.Vocabulary.adapt(corpus.train, level="char")
train_ds = ktg.make_dataset(corpus.train, vocab, mode=corpus.mode, batch_size=64)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode=corpus.mode, shuffle=False)
model = ktg.build_model(vocab, units=256, layers=2)
model.fit(train_ds, validation_data=val_ds, epochs=5,
          callbacks=[ktg.SampleCallback(vocab, prompts=["def "])])
print(ktg.generate(model, vocab, ["def ", "The "], max_length=200, temperature=0.8, seed=7))
```

A saved model directory loads back with `model, vocab = ktg.load("runs/python-docs")`;
after `import keras_textgen`, `keras.saving.load_model("runs/python-docs/model.keras")`
works too.
"""

__version__ = "0.1.0"

import importlib

from keras_textgen import custom_objects as _custom_objects

# `keras.saving.load_model` needs TokenEncoding and PerGateLSTM registered: done now if
# Keras is loaded, else as soon as it is (see keras_textgen/custom_objects.py).
_custom_objects.register_when_keras_loads()

# Public names -> the module that defines them. They are imported on first
# use (PEP 562), so `import keras_textgen` does not load TensorFlow, and the
# CLI can quiet TensorFlow's start-up logging before it loads it.
_EXPORTS = {
    "BitsPerTokenLogger": "callbacks", "SampleCallback": "callbacks",
    "Greedy": "sampling", "Temperature": "sampling", "TopK": "sampling", "TopP": "sampling",
    "TextGenerator": "generation", "generate": "generation",
    "TokenEncoding": "layers", "PerGateLSTM": "lstm", "build_model": "model", "make_dataset": "data",
    "TrainConfig": "config", "train": "training", "Vocabulary": "vocab", "load_model_dir": "artifacts",
    "load": "artifacts",
    "export_saved_model": "export", "export_tflite": "export", "LiteGenerator": "lite",
    "configure_threads": "threads",
}
_MODULES = {"corpus": "corpus", "errors": "errors", "sampling": "sampling", "export": "export", "lite": "lite",
            "losses": "losses", "vocab": "vocab", "custom_objects": "custom_objects"}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"keras_textgen.{_MODULES[name]}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"keras_textgen.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'keras_textgen' has no attribute {name!r}")


def __dir__():
    return __all__
