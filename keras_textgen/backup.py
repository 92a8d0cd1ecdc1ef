"""Crash-safe training state for `model.fit`: resume by epoch *and* step, never a half-written file.

Keras 3's `keras.callbacks.BackupAndRestore` writes `latest.weights.h5` in
place (a kill during the write leaves a truncated file) and, on restore,
restarts the interrupted epoch from step 0 with the mid-epoch weights: the
steps already done in that epoch are trained again, so a resumed run takes
more optimizer steps than an uninterrupted one.

`StepBackupAndRestore` here is a reimplementation of that callback's contract
(same arguments and `backup_dir` role; it shares none of Keras's code, since
both of its hooks' behaviours change) that fixes both:

* each backup is a new `ckpt-<global step>.weights.h5` (model weights and
  optimizer state, `optimizer.iterations` included) written under a
  temporary name and renamed; then `training_metadata.json` (also written
  atomically) is switched to point at it. A kill at any moment leaves the
  previous complete backup in force;
* on restore it skips the interrupted epoch's finished steps: the resumed
  epoch stops after `steps_per_epoch - step` steps, so the run ends after
  exactly `epochs * steps_per_epoch` optimizer steps with one history row per
  epoch. The epoch length must be known to Keras (`steps_per_epoch`, or a
  dataset of known cardinality); otherwise the interrupted epoch restarts
  from its first step, as in Keras.

`training_metadata.json`::

    {"epoch": 2, "step": 30, "batch": 30, "global_step": 230,
     "weights": "ckpt-000000000230.weights.h5",
     "previous": {"epoch": 2, "step": 20, "global_step": 220, "weights": "ckpt-000000000220.weights.h5"}}

`epoch` counts finished epochs, `step` the finished steps of epoch `epoch`
(0-based), `global_step` the optimizer steps so far. With
`double_checkpoint=True` the previous backup is kept as a fallback for a
backup that cannot be read.

Under a multi-worker strategy every worker restores from the same
`backup_dir` (which must be on storage that all workers see), and only the
chief writes.
"""

import csv
import io
import json
import math
import os
import re
import shutil

import keras

from keras_textgen import errors
from keras_textgen import io_utils

STATE_FILE = "training_metadata.json"
_CKPT = re.compile(r"^ckpt-\d+\.weights\.h5$")


def read_state(backup_dir):
    """The backup state in `backup_dir` (the dict above), or `None` if there is none.

    Raises:
        ArtifactError: the state file is not valid JSON (it is always
            written atomically, so only outside damage causes this).
    """
    path = os.path.join(os.fspath(backup_dir), STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        missing = [key for key in ("epoch", "step", "global_step", "weights") if key not in state]
    except (ValueError, TypeError) as e:
        missing = [str(e)]
    if missing:
        raise errors.ArtifactError(f"{path} is not a valid backup state ({missing[0]}); "
                                   f"delete {backup_dir} to restart the run")
    return state


class StepBackupAndRestore(keras.callbacks.Callback):
    """Keras's `BackupAndRestore`, reimplemented: atomic backups and resume by epoch and step.

    It takes `keras.callbacks.BackupAndRestore`'s arguments and can replace
    it in any `model.fit`; every hook is its own (see the module docstring).

    Args:
        backup_dir: folder of the backups (only for this run's backups).
        save_freq: `"epoch"`, or an integer: also back up whenever the global
            optimizer step reaches a multiple of it. A backup is always taken
            at the end of each epoch as well.
        double_checkpoint: keep the previous backup as a fallback.
        delete_checkpoint: delete `backup_dir` when `fit` returns (Keras's
            default); `keras_textgen.training` keeps it until the finished
            model is on disk and removes it then.
        print_fn: called with one line when a run resumes (`None`: silent).
        resumable: callbacks whose state travels in the backup: each has
            `backup_state()` (a JSON-able dict merged into the backup's
            entry) and `restore_state(entry)`, called with the entry a run
            resumes from before any callback's `on_train_begin` but this one's.

    Put it first in the `callbacks` list: it ends the resumed epoch early
    through `model.stop_training`, and must clear that flag at the epoch's
    end before callbacks such as `EarlyStopping` set it for their own reasons.

    Example:

    >>> model.fit(ds, epochs=5, steps_per_epoch=100,
    ...           callbacks=[StepBackupAndRestore("runs/x/backup", save_freq=20), ...])
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=True,
                 print_fn=None, resumable=()):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        if save_freq != "epoch" and (isinstance(save_freq, bool) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or a positive integer, got {save_freq!r}")
        self.print_fn = print_fn
        self.resumable = list(resumable)
        self.restored = None  # the state restored by the last `on_train_begin`, or None
        self._resume_step = 0  # steps of the first epoch already done before this fit
        self._epoch = 0
        self._epoch_offset = 0
        self._epoch_start_global = 0
        self._global = 0
        self._last_saved_global = -1
        self._cut_short = False
        self._pending_epoch_end = None
        self._state = None

    # -- helpers --------------------------------------------------------------
    @property
    def is_writer(self):
        """Only the chief writes under a multi-worker strategy; every worker restores."""
        return _is_writer(self.model)

    def _epoch_length(self):
        steps = (self.params or {}).get("steps")
        return int(steps) if steps else None

    def _load(self, entry):
        path = os.path.join(self.backup_dir, entry["weights"])
        optimizer = self.model.optimizer
        with self.model.distribute_strategy.scope():
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(path)

    # -- restore ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError("To use StepBackupAndRestore, build the model before calling fit().")
        state = self._state = read_state(self.backup_dir)
        self.restored = None
        self._resume_step = 0
        if state is not None:
            candidates = [state] + ([state["previous"]] if self.double_checkpoint and state.get("previous") else [])
            failure = None
            for entry in candidates:
                try:
                    self._load(entry)
                except (OSError, ValueError, KeyError) as e:
                    failure = failure or e
                    continue
                self.restored = entry
                break
            if self.restored is None:
                raise errors.ArtifactError(
                    f"cannot read the backup in {self.backup_dir} ({type(failure).__name__}: "
                    f"{str(failure).splitlines()[0] if str(failure) else ''}); delete it to restart the run")
            self._state = self.restored
            _set_seed_states(self.model, self.restored.get("seed_states"))
            for callback in self.resumable:
                callback.restore_state(self.restored)
            self.model._initial_epoch = int(self.restored["epoch"])
            self._resume_step = int(self.restored["step"])
            if self.print_fn is not None:
                self.print_fn(f"Resuming from the backup at epoch {self.restored['epoch'] + 1}, step "
                              f"{self.restored['step']} (global step {self.restored['global_step']})")
        optimizer = self.model.optimizer
        self._global = int(optimizer.iterations.numpy()) if optimizer is not None else 0
        self._last_saved_global = self._global

    def on_epoch_begin(self, epoch, logs=None):
        if self._pending_epoch_end is not None:  # the previous epoch's backup, after every callback saw its end
            self._save(*self._pending_epoch_end)
            self._pending_epoch_end = None
        self._epoch = epoch
        self._epoch_offset, self._resume_step = self._resume_step, 0
        if self._epoch_offset and self._epoch_length() is None:
            self._epoch_offset = 0  # unknown epoch length: the epoch restarts from its first step, as in Keras
        self._epoch_start_global = self._global
        self._cut_short = False

    # -- progress -------------------------------------------------------------
    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1  # `batch` is the last step index of this call (steps_per_execution aware)
        self._global = self._epoch_start_global + done
        epoch_steps = self._epoch_offset + done
        length = self._epoch_length()
        if length is not None and epoch_steps >= length:
            if self._epoch_offset:
                self.model.stop_training = True  # the resumed epoch is complete: skip its finished steps
                self._cut_short = True
            return  # the end-of-epoch backup follows
        if self.save_freq != "epoch" and self._global // self.save_freq > self._last_saved_global // self.save_freq:
            self._save(self._epoch, epoch_steps)

    def on_epoch_end(self, epoch, logs=None):
        if self._cut_short:
            loss = (logs or {}).get("loss")
            finite = loss is None or math.isfinite(float(loss))
            if finite:  # TerminateOnNaN may have asked to stop in the same step
                self.model.stop_training = False
            self._cut_short = False
        self._pending_epoch_end = (epoch + 1, 0)

    def on_train_end(self, logs=None):
        if self._pending_epoch_end is not None:
            self._save(*self._pending_epoch_end)
            self._pending_epoch_end = None
        if self.delete_checkpoint and self.is_writer:
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    # -- saving ---------------------------------------------------------------
    def _save(self, epoch, step):
        self._last_saved_global = self._global
        if not self.is_writer:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"ckpt-{self._global:012d}.weights.h5"
        with io_utils.atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        entry = {"epoch": int(epoch), "step": int(step), "batch": int(step), "global_step": int(self._global),
                 "weights": name}
        entry["seed_states"] = [[int(x) for x in v.numpy()] for v in _seed_states(self.model)]
        for callback in self.resumable:
            entry.update(callback.backup_state())
        previous = self._state
        if self.double_checkpoint and previous is not None and previous["weights"] != name:
            entry["previous"] = {k: v for k, v in previous.items() if k != "previous"}
        io_utils.atomic_write_text(os.path.join(self.backup_dir, STATE_FILE), json.dumps(entry, indent=1) + "\n")
        self._state = entry
        keep = {entry["weights"], entry.get("previous", {}).get("weights")}
        for other in os.listdir(self.backup_dir):
            if _CKPT.match(other) and other not in keep:
                os.remove(os.path.join(self.backup_dir, other))
        io_utils.remove_stale_temporaries(self.backup_dir)


def _seed_states(model):
    """The state variables of the model's random layers (`Dropout`), which `save_weights` leaves out."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _set_seed_states(model, states):
    """Puts back `_seed_states` from a backup, so a resumed run draws the dropout masks it would have drawn."""
    variables = _seed_states(model)
    if states is not None and len(states) == len(variables):
        for variable, value in zip(variables, states):
            variable.assign(value)


def _is_writer(model):
    strategy = getattr(model, "distribute_strategy", None)
    return bool(getattr(getattr(strategy, "extended", None), "should_checkpoint", True))


class HistoryCSV(keras.callbacks.Callback):
    """Per-epoch logs in a CSV file that is rewritten atomically at each epoch's end.

    Unlike `keras.callbacks.CSVLogger(append=True)`, a kill never leaves a
    half-written row that a resumed run would glue its next row onto. Rows
    already in the file are kept, and a re-run epoch replaces its old row.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self.rows = {}

    def on_train_begin(self, logs=None):
        self.rows = {}
        if os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        self.rows[int(row.pop("epoch"))] = {k: v for k, v in row.items() if v not in ("", None)}
                    except (KeyError, TypeError, ValueError):
                        continue

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch] = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        if not _is_writer(self.model):
            return
        keys = sorted({k for row in self.rows.values() for k in row})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["epoch"] + keys, lineterminator="\n")
        writer.writeheader()
        for e in sorted(self.rows):
            writer.writerow({"epoch": e, **self.rows[e]})
        io_utils.atomic_write_text(self.path, out.getvalue())


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class BestModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint(save_best_only=True)` that writes atomically and remembers its best across restarts.

    Keras's callback decides when to save (`mode="min"`); this adds two
    things on top. The `.keras` file is written to a temporary name and
    renamed, so a kill never leaves half a model. And `{monitor, value,
    epoch, step}` is kept in a JSON file beside it (`best.keras` ->
    `best.json`; `epoch` counts evaluations from 1, `step` optimizer steps),
    from which a resumed run takes its `initial_value_threshold`: without it
    a resumed run would replace a better model with a worse one. An
    evaluation without a finite `monitor` value is never saved.
    """

    def __init__(self, path, monitor="val_loss"):
        path = os.fspath(path)
        self.best_path = os.path.splitext(path)[0] + ".json"
        super().__init__(path, monitor=monitor, mode="min", save_best_only=True,
                         initial_value_threshold=self._saved_best(path, monitor))

    def _saved_best(self, path, monitor):
        if not (os.path.exists(path) and os.path.exists(self.best_path)):
            return None
        try:
            with open(self.best_path, encoding="utf-8") as f:
                saved = json.load(f)
            return float(saved["value"]) if saved.get("monitor") == monitor else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_model(self, epoch, batch, logs):
        current = (logs or {}).get(self.monitor)
        if current is None or not math.isfinite(float(current)):
            return
        if not self._should_save_model(epoch, batch, logs, self.filepath) or not _is_writer(self.model):
            return
        with io_utils.atomic_path(self.filepath) as tmp:
            self.model.save(tmp, overwrite=True)
        step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer is not None else None
        io_utils.atomic_write_text(self.best_path, json.dumps(
            {"monitor": self.monitor, "value": float(current), "epoch": epoch + 1, "step": step}) + "\n")
