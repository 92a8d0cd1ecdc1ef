"""The one place that makes keras_textgen's custom Keras objects known to Keras.

A `model.keras` file names its custom classes (`keras_textgen>TokenEncoding`,
`keras_textgen>PerGateLSTM`); `keras.saving.load_model` finds them only once
the modules defining them have run their `@keras.saving.register_keras_serializable`.
`import keras_textgen` arranges that without loading TensorFlow itself (the
CLI's `--help` and the TensorFlow-free `keras_textgen.lite` rely on that):

* if Keras is already imported, the modules below are imported at once;
* otherwise they are imported right after Keras is first imported (a
  one-shot import hook), so `import keras_textgen; import keras;
  keras.saving.load_model(...)` works in a fresh process.

To add a custom object (a layer, a learning-rate schedule, a loss...):
decorate it with `@keras.saving.register_keras_serializable(package="keras_textgen")`
and add its module to `MODULES`.
"""

import importlib
import importlib.util
import sys
import threading
import warnings

# The modules defining registered Keras objects. Add yours here.
MODULES = (
    "keras_textgen.layers",  # TokenEncoding
    "keras_textgen.lstm",  # PerGateLSTM
    "keras_textgen.losses",  # TokenCrossentropy, a trained model's loss
    "keras_textgen.schedules",  # WarmupCosineDecay, a trained model's learning-rate schedule
)

_lock = threading.Lock()


def register():
    """Imports every module of `MODULES` (and so Keras and TensorFlow); idempotent."""
    for name in MODULES:
        importlib.import_module(name)


def _register_or_warn():
    try:
        register()
    except Exception as e:  # never break the user's `import keras`
        warnings.warn(f"keras_textgen could not register its Keras objects ({type(e).__name__}: {e}); "
                      f"call keras_textgen.custom_objects.register() before loading a keras_textgen model",
                      stacklevel=3)


class _AfterKerasImport:
    """A one-shot `sys.meta_path` finder: runs `register()` once `keras` has been executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("keras")  # the usual finders, this one removed
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_or_warn()

        spec.loader.exec_module = exec_then_register
        return spec


_hook = _AfterKerasImport()


def _remove_hook():
    with _lock:
        if _hook in sys.meta_path:
            sys.meta_path.remove(_hook)


def register_when_keras_loads():
    """Registers now if Keras is imported, else right after its first import. Called by `import keras_textgen`."""
    if sys.modules.get("keras") is not None:
        _register_or_warn()
        return
    with _lock:
        if _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)
