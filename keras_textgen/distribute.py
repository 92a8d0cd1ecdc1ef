"""`tf.distribute` for `train --strategy`: the strategy, its `TF_CONFIG`, which process writes, what runs on it."""

import json
import os

import numpy as np
import tensorflow as tf

from keras_textgen import errors

STRATEGIES = ("mirrored", "multi-worker", "tpu")


def get_strategy(name):
    """The `tf.distribute` strategy for `--strategy`; create it before any other TensorFlow op runs.

    * `None` / `"default"`: the default strategy (one device).
    * `"mirrored"`: `MirroredStrategy` over every local GPU, or over every
      logical CPU device when there is no GPU (configure several with
      `tf.config.set_logical_device_configuration` to test on a laptop).
    * `"multi-worker"`: `MultiWorkerMirroredStrategy`; the cluster and this
      worker's role come from the `TF_CONFIG` environment variable.
    * `"tpu"`: `TPUStrategy` on the TPU named by `TPU_NAME` (default
      `"local"`, a Cloud TPU VM).
    """
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi-worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise errors.ConfigError(f"--strategy tpu: no TPU found ({first})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise errors.ConfigError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _check_tf_config():
    """A clear error for a `TF_CONFIG` that MultiWorkerMirroredStrategy would choke on."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return  # one worker: the strategy runs alone
    try:
        tf_config = json.loads(text)
    except ValueError as e:
        raise errors.ConfigError(f"TF_CONFIG is not valid JSON ({e})") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise errors.ConfigError('TF_CONFIG needs "cluster" and "task", e.g. {"cluster": {"worker": '
                                 '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise errors.ConfigError(f"TF_CONFIG task {task!r} is not in its cluster {sorted(cluster)}")


def _task():
    """`(task type, task index, cluster)` of `TF_CONFIG`, or `None` when it is unreadable (`get_strategy` says why)."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
        return task.get("type", "worker"), int(task.get("index", 0)), dict(cluster)
    except (ValueError, TypeError, AttributeError):
        return None


def workers(config):
    """Processes of the run: the chief and workers of `TF_CONFIG` under `multi-worker`, else 1."""
    task = _task() if config.strategy == "multi-worker" else None
    if task is None:
        return 1
    try:
        return max(1, sum(len(task[2].get(kind) or []) for kind in ("chief", "worker")))
    except TypeError:
        return 1


def worker_index(config):
    """This process's place among `workers(config)`: the chief first, then the workers in order."""
    task = _task() if config.strategy == "multi-worker" else None
    if task is None or task[0] == "chief":
        return 0
    kind, index, cluster = task
    return index + (1 if cluster.get("chief") else 0)


def all_gather_bytes(strategy, payload, workers, index):
    """Every worker's `payload` (bytes), in worker order, on every worker of a multi-worker `strategy`.

    Collectives add numbers, so each worker writes its bytes into its own
    row of a zero matrix and the rows are summed (`Strategy.reduce`):
    one all-reduce for the lengths, one for the bytes (4 to an int64 word,
    so that the sum over a worker's local replicas cannot overflow). Every
    worker must call it at the same point of the run, as any collective.

    Example (each of 2 workers): `all_gather_bytes(strategy, b"mine", 2, worker_index(config))`
    gives `[worker 0's bytes, worker 1's bytes]`.
    """
    local = max(1, strategy.num_replicas_in_sync // workers)  # each local replica adds the worker's row once

    def summed(rows):
        return strategy.reduce("SUM", strategy.run(lambda: tf.identity(rows)), axis=None)

    lengths = np.zeros([workers], np.int64)
    lengths[index] = len(payload)
    lengths = summed(tf.constant(lengths)).numpy() // local
    words = -(-int(lengths.max()) // 4)
    rows = np.zeros([workers, words], np.int64)
    rows[index] = np.frombuffer(payload.ljust(4 * words, b"\0"), np.uint32)
    rows = (summed(tf.constant(rows)).numpy() // local).astype(np.uint32)
    return [rows[w].tobytes()[:lengths[w]] for w in range(workers)]


def writes_model_dir(config):
    """Whether this process writes the model directory: all but the non-chief workers of a multi-worker run."""
    if config.strategy != "multi-worker":
        return True
    task = _task()
    if task is None:
        return True  # get_strategy reports a broken TF_CONFIG
    kind, index, cluster = task
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0


def check_replicas(config, replicas):
    """Refuses several steps per call with several replicas: Keras 3's multi-step loop fails there.

    Keras runs each step of a multi-step call inside a `tf.cond`, and the
    optimizer's cross-replica `merge_call` in it fails ("You must feed a
    value for placeholder tensor", keras-team/keras#19246; seen with Keras
    3.15 and `MirroredStrategy` over 2 devices). With one replica it runs.
    """
    if (config.steps_per_execution or 1) > 1 and replicas > 1:
        raise errors.ConfigError(
            f"steps_per_execution={config.steps_per_execution} does not run with {replicas} replicas "
            "(Keras 3's multi-step loop under a distribution strategy, keras-team/keras#19246); leave it unset")
