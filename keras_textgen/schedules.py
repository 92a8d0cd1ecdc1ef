"""The learning-rate schedule of a run: warm-up, then cosine decay to a floor as the run's progress reaches 1."""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_textgen")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then cosine decay from `peak` to `floor * peak`.

    The decay follows the run's progress: the larger of `step / total_steps`
    (the step bound) and `progress`, a variable in [0, 1] that
    `keras_textgen.stopping.RunClock` sets to the seconds spent over the
    time budget. `keras.optimizers.schedules.CosineDecay` decays over a step
    count fixed when it is built; a time budget's step count is not known
    then (it depends on the machine and its load), so the decay also reads
    how far the clock is. The learning rate reaches its floor when the run
    ends by its bound or its budget, as nanoGPT's reaches `min_lr` at
    `max_iters`. A run without a budget is a function of the step alone.

    Args:
        peak: the learning rate after warm-up.
        total_steps: the optimizer steps of the run's bound, or `None`.
        warmup_steps: optimizer steps of linear warm-up from `peak / warmup_steps`.
        floor: the final learning rate as a fraction of `peak`.

    Example:

    >>> schedule = WarmupCosineDecay(3e-3, total_steps=10_000, warmup_steps=100, floor=0.1)
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    >>> float(schedule(10_000))  # the end of the run
    0.0003
    """

    def __init__(self, peak, total_steps=None, warmup_steps=100, floor=0.1, name="warmup_cosine_decay"):
        if not (math.isfinite(peak) and peak > 0):
            raise ValueError(f"peak must be a positive number, got {peak!r}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor!r}")
        self.peak = float(peak)
        self.total_steps = int(total_steps) if total_steps else None
        self.warmup_steps = int(max(warmup_steps, 0))
        self.floor = float(floor)
        self.name = name
        # Not part of the config: a loaded model's schedule starts at progress 0.
        self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name=f"{name}_progress")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.minimum(1.0, (step + 1.0) / float(max(self.warmup_steps, 1)))
        progress = tf.cast(self.progress, tf.float32)
        if self.total_steps:
            progress = tf.maximum(progress, step / float(self.total_steps))
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.peak * warm * (self.floor + (1.0 - self.floor) * cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "floor": self.floor, "name": self.name}
