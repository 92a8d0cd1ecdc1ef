"""CPU thread pools for training: one thread per op on small CPU-only machines.

A recurrent model trains through a loop of small ops: one LSTM(128) step at
batch 256 multiplies `[256, 128]` by `[128, 512]`. By default TensorFlow
splits every op across all cores, and on a machine with few cores splitting
and joining each small op costs more than it saves. With one intra-op
thread, each op runs whole on one core and TensorFlow's inter-op pool runs
independent ops (say, two gradients) side by side. On this project's 2-core
machine that trains the LSTM(128) benchmark model about a quarter faster
(`bench/`, section 2). On machines with more cores, or with a GPU, the
default is left alone: there each op has cores to spare.

Generation is the same kind of loop: one LSTM(256) step for one prompt is
a `[1, 256] x [256, 256]` matmul per gate, so `keras-textgen generate` and
`evaluate` apply "auto" too.

TensorFlow fixes its thread pools when it runs its first op, so this must
run first; `keras-textgen train` does (`--intra-op-threads`), and so do
`generate` and `evaluate`.
"""

import os

from keras_textgen import errors

AUTO = "auto"
# "auto" uses one intra-op thread on CPU-only machines with at most this many usable cores.
AUTO_MAX_CORES = 2


def usable_cores():
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve(intra_op=AUTO):
    """The intra-op thread count `configure_threads` would apply; 0 means TensorFlow's default.

    Args:
        intra_op: `"auto"`, or an integer >= 0 (0 = TensorFlow's default).
    """
    if intra_op == AUTO:
        import tensorflow as tf

        small_cpu_only = usable_cores() <= AUTO_MAX_CORES and not tf.config.list_physical_devices("GPU")
        return 1 if small_cpu_only else 0
    if isinstance(intra_op, bool) or not isinstance(intra_op, int) or intra_op < 0:
        raise errors.ConfigError(f"intra_op_threads must be 'auto' or an integer >= 0 (0 = TensorFlow's "
                                 f"default), got {intra_op!r}")
    return intra_op


def configure_threads(intra_op=AUTO):
    """Sets TensorFlow's intra-op thread pool for training; call it before any TensorFlow op runs.

    Args:
        intra_op: `"auto"` (one thread on a CPU-only machine with at most
            `AUTO_MAX_CORES` usable cores, else TensorFlow's default), or
            an integer: that many threads, 0 for TensorFlow's default.

    Returns:
        The thread count now in force, or `None` when TensorFlow's default
        is kept (asked for, or `"auto"` after TensorFlow already started).

    Raises:
        ConfigError: for a bad value, or an explicit count that cannot be
            applied because TensorFlow already ran an op in this process.

    Example:

    >>> import keras_textgen as ktg
    >>> ktg.configure_threads()  # first thing in a training script
    1
    >>> # (1 on a 2-core CPU-only machine; None where TensorFlow's default stays)
    """
    import tensorflow as tf

    threads = resolve(intra_op)
    if threads == 0:
        return None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        if intra_op == AUTO:
            return None
        raise errors.ConfigError(
            f"intra-op threads can only be set before TensorFlow runs its first op; call "
            f"configure_threads({threads}) at the start of the process") from None
    return threads
