"""When a run ends: a wall-clock budget and early stopping, both carried across a kill and resume.

Both callbacks keep their state in the run's backup (`keras_textgen.backup.
StepBackupAndRestore(resumable=...)` calls `backup_state` when it writes a
backup and `restore_state` when it resumes from one), so a resumed run has
the time already spent and the evaluations already seen.
"""

import math
import time

import keras

from keras_textgen.config import format_duration, parse_duration  # noqa: F401  (TensorFlow-free, for the CLI)

class RunClock(keras.callbacks.Callback):
    """Counts a run's training seconds across restarts, ends the run at its budget and drives its schedule.

    After every training call it sets `progress` (the variable of a
    `keras_textgen.schedules.WarmupCosineDecay`, if given) to the seconds
    spent over the budget, so the learning rate reaches its floor when the
    budget ends. When the seconds reach the budget it stops training; Keras
    still evaluates the epoch it was in, so the last, annealed weights are
    scored. At each epoch's end it adds `step` (optimizer steps so far),
    `train_seconds` and `learning_rate` to the logs.

    The seconds are wall-clock seconds inside `fit` (tracing, validation and
    samples included). A resumed run starts from the seconds its backup
    recorded: work lost after the last backup is done again, not counted twice.

    Args:
        budget_seconds: the time budget, or `None` for none.
        progress: a scalar float variable to advance, or `None`.
        clock: a `time.monotonic`-like function (for tests).

    Attributes:
        stopped: `True` once the budget ended the run.
    """

    def __init__(self, budget_seconds=None, progress=None, clock=time.monotonic):
        super().__init__()
        self.budget_seconds = budget_seconds
        self.progress = progress
        self.clock = clock
        self.spent_before = 0.0
        self.stopped = False
        self._start = None

    @property
    def seconds(self):
        """Training seconds of the whole run so far, earlier processes included."""
        return self.spent_before + (self.clock() - self._start if self._start is not None else 0.0)

    def backup_state(self):
        return {"train_seconds": self.seconds}

    def restore_state(self, state):
        self.spent_before = float(state.get("train_seconds", 0.0))

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self._update()

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        self._update()  # again after StepBackupAndRestore, which may clear stop_training at an epoch's end
        if logs is not None and self.model.optimizer is not None:  # for the history of every evaluation
            logs["step"] = int(self.model.optimizer.iterations.numpy())
            logs["train_seconds"] = self.seconds
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_end(self, logs=None):
        self.spent_before, self._start = self.seconds, None

    def _update(self):
        if not self.budget_seconds:
            return
        fraction = self.seconds / self.budget_seconds
        if fraction >= 1.0:
            self.stopped = True
            self.model.stop_training = True
        if self.progress is not None:
            self.progress.assign(min(1.0, fraction))


class EarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` on `val_loss` whose count survives a kill and resume.

    Keras's callback starts counting afresh in every `fit`, so a run killed
    and resumed twice within its patience would never stop. Here `best`,
    `best_epoch` and `wait` travel in the run's backup. Restoring the best
    weights is left to `keras_textgen.backup.BestModelCheckpoint`, whose
    file outlives the process (`restore_best_weights` keeps them in memory).

    Args:
        patience: evaluations without improvement before the run stops.
        min_delta: the smallest decrease of `val_loss` that counts.

    Attributes:
        stopped: `True` once it ended the run.
    """

    def __init__(self, patience, min_delta=0.0):
        super().__init__(monitor="val_loss", mode="min", patience=patience, min_delta=min_delta)
        self.stopped = False
        self._restored = None

    def backup_state(self):
        best = None if self.best is None or not math.isfinite(self.best) else float(self.best)
        return {"early_stopping": {"best": best, "best_epoch": int(self.best_epoch), "wait": int(self.wait),
                                   "stopped": self.stopped}}

    def restore_state(self, state):
        self._restored = state.get("early_stopping")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restored:
            if self._restored.get("best") is not None:
                self.best = self._restored["best"]
            self.best_epoch = self._restored.get("best_epoch", 0)
            self.wait = self._restored.get("wait", 0)
            self.stopped = bool(self._restored.get("stopped", False))

    def on_epoch_end(self, epoch, logs=None):
        stopping_already = self.model.stop_training  # the time budget, say
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and not stopping_already:
            self.stopped = True
