"""How many training steps run per `tf.function` call of `model.fit` (Keras's `steps_per_execution`)."""

import contextlib

from keras_textgen import errors

MAX_STEPS_PER_EXECUTION = 8


def steps_per_execution_for(epoch_steps, *step_counts, limit=MAX_STEPS_PER_EXECUTION):
    """How many training steps `train` runs per `tf.function` call of `model.fit`.

    Keras's `steps_per_execution` runs several steps in one call, which spares
    the Python and function-call work between steps: LSTM(128) at batch 256
    trains about 7% faster with 8 than with 1 on the benchmark's 2-core CPU,
    with the same arithmetic. But Keras only runs whole calls: an epoch runs
    a multiple of `steps_per_execution` steps (more than `steps_per_epoch`
    if it does not divide it), and callbacks see the step count at the end
    of a call only. The same holds for validation with a fixed number of
    steps. So this is the largest count up to `limit` that divides
    `epoch_steps` and each of `step_counts`: epochs and validations end on
    the same step as one step at a time, and a backup, taken at the end of
    the call that reaches each multiple of `backup_every`, always falls on a
    whole call, so a resumed epoch runs whole calls too.

    Args:
        epoch_steps: steps per epoch; `None` or < 1 (unknown) gives 1.
        *step_counts: other counts to divide: the fixed number of
            validation steps, the step of the epoch a run resumes at;
            `None` or 0 are skipped (a pass over finite validation data ends
            where its data ends).
        limit: the largest count to consider.

    Example:

    >>> steps_per_execution_for(150)
    6
    """
    if not epoch_steps or epoch_steps < 1:
        return 1
    counts = [epoch_steps] + [c for c in step_counts if c]
    return max(n for n in range(1, limit + 1) if all(c % n == 0 for c in counts))


def check_steps_per_execution(steps_per_execution, step_counts):
    """Refuses a `steps_per_execution` that does not divide each of `{name: steps}` (see `steps_per_execution_for`)."""
    for name, steps in step_counts.items():
        if steps is not None and steps % steps_per_execution:
            raise errors.ConfigError(f"steps_per_execution must divide {name} ({steps}), got {steps_per_execution}")


@contextlib.contextmanager
def steps_per_call(model, steps_per_execution):
    """Runs the `model.fit` inside with `steps_per_execution` steps per call.

    The model's own setting (the one its `compile` had, which `model.save`
    writes) comes back afterwards, with its step functions rebuilt on next
    use, so the saved or returned model evaluates and trains as compiled.
    """
    own = model.steps_per_execution
    model.steps_per_execution = steps_per_execution
    try:
        yield model
    finally:
        model.steps_per_execution = own
        model.train_function = model.test_function = model.predict_function = None


def for_run(config, epoch_steps, state):
    """The run's `steps_per_execution`: the configured one, checked, or the automatic one.

    `epoch_steps` are the steps of one of `fit`'s epochs. Both divide the
    step of the epoch a resumed run starts at (a backup of a run with
    another count, or of an older version, may sit between two calls of this
    one). Automatic under a distribution strategy is 1: with several
    replicas Keras's multi-step loop fails (`distribute.check_replicas`).
    """
    resume_step = state["step"] if state else None
    if config.steps_per_execution is not None:
        given = config.steps_per_epoch or config.validate_every  # checked by `validate` or below
        check_steps_per_execution(config.steps_per_execution, {
            "the steps of one pass over the training data": None if given else epoch_steps,
            "validate_every": config.validate_every,
            "the step of the epoch its backup was taken at": resume_step})
        return config.steps_per_execution
    if config.strategy not in (None, "default"):
        return 1
    return steps_per_execution_for(epoch_steps, config.validation_steps, resume_step)
