"""keras_textgen._compat: each Keras patch still matches the Keras it patches, and is undone after use.

When one of these fails after a Keras upgrade, the patched symbol moved or
Keras changed the code the patch works around: check whether the bug is
fixed (then drop the patch) or move the patch, and update `SEEN_WITH`.
"""

import inspect

import keras
import pytest
import tensorflow as tf

from keras_textgen import _compat
from conftest import fresh_process_json


def test_keras_is_a_version_the_patches_were_checked_with():
    assert keras.__version__.rsplit(".", 1)[0] in _compat.SEEN_WITH or keras.__version__ in _compat.SEEN_WITH, (
        f"Keras {keras.__version__}: re-check keras_textgen/_compat.py's patches, then add it to SEEN_WITH")


def test_reduce_per_replica_still_reduces_scalars_over_workers_with_axis_0():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    fn = tf_trainer.reduce_per_replica
    assert list(inspect.signature(fn).parameters) == ["values", "strategy", "reduction"]
    source = inspect.getsource(fn)
    # The bug (tensorflow/tensorflow#72388): a scalar cannot be reduced along axis 0.
    assert 'strategy.reduce("MEAN", v, axis=0)' in source, "Keras changed reduce_per_replica: is the bug fixed?"
    # The trainer calls it through the module global, which is what the patch replaces.
    assert "reduce_per_replica(" in inspect.getsource(tf_trainer.TensorFlowTrainer)


def test_symbolic_build_still_probes_the_first_batch():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    method = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    assert list(inspect.signature(method).parameters) == ["self", "iterator", "data_batch"]
    source = inspect.getsource(method)
    assert "next(it)" in source, "Keras no longer probes a batch of the iterator: is the patch still needed?"


def test_patches_are_undone_after_the_block():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    original_reduce = tf_trainer.reduce_per_replica
    spec = tf.TensorSpec([None, 3])
    calls = []
    with _compat.build_from_spec(model, spec), _compat.scalar_logs_reduced_across_workers():
        assert tf_trainer.reduce_per_replica is not original_reduce
        assert "_maybe_symbolic_build" in vars(model)
        model.__dict__["_symbolic_build"] = lambda data_batch=None: calls.append(data_batch)
        model._distribute_strategy = tf.distribute.get_strategy()
        model._maybe_symbolic_build(iterator=object())  # the probe is not consulted: the spec is used
        del model.__dict__["_symbolic_build"]
    assert calls == [spec]
    assert tf_trainer.reduce_per_replica is original_reduce
    assert "_maybe_symbolic_build" not in vars(model)
    assert model._maybe_symbolic_build.__func__ is tf_trainer.TensorFlowTrainer._maybe_symbolic_build


@pytest.mark.slow
def test_tensorflow_s_import_still_imports_matplotlib():
    """What `matplotlib_held_back` works around; when this fails, Keras stopped: drop the workaround."""
    loaded = fresh_process_json("import json, sys, tensorflow\n"
                                 "print(json.dumps('matplotlib.pyplot' in sys.modules))")
    assert loaded, "Keras no longer imports matplotlib with TensorFlow: drop _compat.matplotlib_held_back"


@pytest.mark.slow
def test_matplotlib_held_back_during_the_import_and_importable_after_it():
    held, after = fresh_process_json(
        "import json, sys\n"
        "from keras_textgen import _compat\n"
        "with _compat.matplotlib_held_back():\n"
        "    import tensorflow\n"
        "held = 'matplotlib' in sys.modules\n"
        "import matplotlib.pyplot\n"
        "print(json.dumps([held, 'matplotlib.pyplot' in sys.modules]))")
    assert (held, after) == (False, True)
