"""Workarounds for Keras bugs, in one place.

Each patch names the bug, the Keras versions it was seen with, and is
undone when its `with` block ends: nothing outside `model.fit` (and the
evaluations inside it) sees a patched Keras. `tests/test_compat.py` fails
loudly when a patched symbol moves or its source no longer holds the
pattern the patch works around, so a Keras upgrade makes us look again.

The two `fit` patches apply only to training under a `tf.distribute`
strategy (`keras-textgen train --strategy ...`); a default-strategy run is
untouched. `matplotlib_held_back` applies only while the CLI imports
TensorFlow, so this module imports neither Keras nor TensorFlow itself.

Example:

>>> with _compat.distributed_fit(model, strategy, train_ds.element_spec):
...     model.fit(train_ds, ...)
"""

import contextlib
import sys

# The Keras releases the bugs below were reproduced with; setup.cfg allows keras>=3.3,<4.
SEEN_WITH = ("3.15",)


def keras_version():
    import keras

    return tuple(int(p) for p in keras.__version__.split(".")[:2])


@contextlib.contextmanager
def matplotlib_held_back():
    """Imports inside the block find no matplotlib; after it, matplotlib imports as usual.

    The cost (no upstream issue found; seen with Keras 3.15): `import
    tensorflow` imports Keras, whose `keras.src.visualization` imports
    `matplotlib.pyplot` at module level, inside `try/except ImportError`:
    about a second of every start of `keras-textgen`, which never plots an
    image gallery. Held back, those Keras modules take matplotlib as absent
    (`keras.visualization.plot_image_gallery` and
    `plot_bounding_box_gallery` then say it is missing); `train`'s history
    plot imports it later, when it draws. Does nothing when matplotlib is
    already imported.

    >>> with _compat.matplotlib_held_back():
    ...     import tensorflow as tf
    """
    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None  # `import matplotlib...` raises ModuleNotFoundError
    try:
        yield
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]


@contextlib.contextmanager
def distributed_fit(model, strategy, element_spec):
    """Patches Keras for `fit` under `strategy` (not the default strategy); undoes them on exit."""
    import tensorflow as tf

    with contextlib.ExitStack() as stack:
        stack.enter_context(build_from_spec(model, element_spec))
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
            stack.enter_context(scalar_logs_reduced_across_workers())
        yield


@contextlib.contextmanager
def build_from_spec(model, element_spec):
    """Lets Keras build a distributed model from the dataset's spec instead of from a batch of it.

    The bug (no upstream issue found; seen with Keras 3.15):
    `TensorFlowTrainer._maybe_symbolic_build` probes the first batch of
    `fit`'s and `evaluate`'s iterator under a strategy, then starts the
    dataset over. That has three costs: a new pass over a reshuffling
    dataset takes a different order (so a distributed run would not see the
    batches a single-device run sees, nor those a resumed run skips to);
    the probe reduces the batch across replicas, which fails for partial
    batches; and under a MultiWorkerMirroredStrategy of several workers it
    fails outright ("Attempt to convert a value (PerReplica...) to a
    Tensor"). The probe only needs shapes and dtypes, which the spec has.
    """
    original = model._maybe_symbolic_build

    def probe(iterator=None, data_batch=None):
        return original(data_batch=element_spec if data_batch is None else data_batch)

    model._maybe_symbolic_build = probe  # on this model only
    try:
        yield
    finally:
        del model._maybe_symbolic_build  # the class's method again


@contextlib.contextmanager
def scalar_logs_reduced_across_workers():
    """Averages scalar logs over workers with `axis=None`, for a MultiWorkerMirroredStrategy of several workers.

    The bug (tensorflow/tensorflow#72388; seen with Keras 3.15): after each
    step Keras's `reduce_per_replica` averages the logs over workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar loss
    and metrics ("Invalid reduction dimension 0 for input with 0
    dimensions"). Everything that is not a scalar goes to Keras unchanged.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            def mean(v):
                scalar = getattr(getattr(v, "shape", None), "rank", None) == 0
                return strategy.reduce("MEAN", v, axis=None) if scalar else original(v, strategy, reduction)
            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
