"""Faults: SIGKILL during training and export, determinism, corrupt artifacts.

Every fault here is real: the CLI runs in a child process that is sent
SIGKILL at a random moment; the random seed of the moments is printed with
every failure, so a failing schedule can be replayed (RELIABILITY_SEED=...).
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import artifacts, backup, errors, export, lock, training
from keras_textgen.lite import LiteGenerator
from conftest import reliability_seed, write_lines_corpus

SEED = reliability_seed()
RNG = random.Random(SEED)
EPOCHS, STEPS = 3, 40
KILLS = 2
TRAIN_ARGS = ["--mode", "chunks", "--time-budget", "none", "--seq-len", "32", "--units", "12", "--layers", "1", "--batch-size", "8",
              "--epochs", str(EPOCHS),
              "--steps-per-epoch", str(STEPS), "--seed", "5", "--backup-every", "4", "--no-samples", "--no-generator",
              "--validation-steps", "2"]
EXE = os.path.join(os.path.dirname(sys.executable), "keras-textgen")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1", "PYTHONUNBUFFERED": "1"}


def spawn(*args):
    return subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(predicate, proc, timeout=120, poll=0.01):
    """Polls until `predicate()` or the process ends; True if the predicate held first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    raise AssertionError(f"timed out (seed {SEED})")


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return out


def resume_line(state):
    return (f"Resuming from the backup at epoch {state['epoch'] + 1}, step {state['step']} "
            f"(global step {state['global_step']})")


def state_of(model_dir):
    return backup.read_state(os.path.join(model_dir, artifacts.BACKUP_DIR))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_lines_corpus(tmp_path_factory.mktemp("corpus"))


def assert_no_half_written_files(model_dir):
    """Every file under a finished name is complete; temporaries are hidden, never under a finished name."""
    for folder, dirs, files in os.walk(model_dir):
        if os.path.relpath(folder, model_dir).split(os.sep)[0] == artifacts.LOG_DIR:
            continue  # TensorBoard event files are append-only logs
        for name in files:
            full = os.path.join(folder, name)
            if folder == os.fspath(model_dir) and name == lock.LOCK_FILE:
                continue  # the killed run's lock (keras_textgen.lock): stale, the next run takes it over
            if name.startswith("."):
                assert ".tmp" in name, full  # a temporary of a killed writer: hidden, never a finished name
                continue
            if name.endswith(".json"):
                json.load(open(full, encoding="utf-8"))
            elif name.endswith(".keras"):
                with zipfile.ZipFile(full) as z:
                    assert z.testzip() is None, full
            elif name.endswith(".h5"):
                import h5py

                with h5py.File(full, "r") as f:
                    assert len(f.keys()) > 0, full
            elif name.endswith(".png"):
                data = open(full, "rb").read()
                assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), full
            elif name.endswith(".csv"):
                lines = open(full, encoding="utf-8").read().splitlines()
                width = len(lines[0].split(","))
                assert all(len(line.split(",")) == width for line in lines), full
    state = state_of(model_dir)
    if state is not None:  # the backup state always points at complete weights
        assert os.path.exists(os.path.join(model_dir, artifacts.BACKUP_DIR, state["weights"]))


@pytest.mark.slow
@pytest.mark.parametrize("memory_budget", [[], ["--memory-budget", "0"]], ids=["in-memory", "streamed"])
def test_sigkill_mid_training_resumes_by_epoch_and_step(corpus_file, tmp_path, memory_budget):
    """Kills at random moments, then a run to the end: the same steps as an uninterrupted run.

    Kill k of n waits until the backup has passed a random global step in the k-th n-th of the
    run, then a random fraction of a second more (so it lands between backups, usually mid-epoch).
    In memory, two kills: the second also kills a resumed run. Streamed from its file (no cache),
    one: the resumed run reads the stream again and skips the batches already trained on, so it
    too sees the batches the uninterrupted run saw.
    """
    model_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    reference = spawn("train", "--corpus", str(corpus_file), "--out", str(reference_dir), *TRAIN_ARGS, *memory_budget)
    args = ["train", "--corpus", str(corpus_file), "--out", str(model_dir), *TRAIN_ARGS, *memory_budget]
    total = EPOCHS * STEPS
    n = 1 if memory_budget else KILLS
    kills = []
    for k in range(n):
        target = RNG.randrange(k * total // n + 4, (k + 1) * total // n - total // 10)
        proc = spawn(*args)
        reached = lambda: (state_of(model_dir) or {}).get("global_step", -1) >= target  # noqa: E731
        assert wait_for(reached, proc), f"run {k + 1} ended before step {target} (seed {SEED}): {proc.stderr.read()}"
        time.sleep(RNG.uniform(0.0, 0.15))
        assert proc.poll() is None, f"run {k + 1} finished before its kill (seed {SEED})"
        out = kill(proc)
        if kills:  # it resumed exactly from the backup the previous kill left
            assert resume_line(kills[-1][1]) in out, (SEED, kills, out[-2000:])
        state = state_of(model_dir)
        assert state["global_step"] == state["epoch"] * STEPS + state["step"] and state["step"] < STEPS
        kills.append((target, state))
        assert_no_half_written_files(model_dir)
    code, out, err = finish(spawn(*args))
    assert code == 0, err[-3000:]
    assert resume_line(kills[-1][1]) in out
    assert_no_half_written_files(model_dir)
    assert not [n for n in os.listdir(model_dir) if n.startswith(".")]
    assert not os.path.exists(model_dir / artifacts.BACKUP_DIR) and not os.path.exists(model_dir / artifacts.RUN_DIR)

    model, vocab, config = ktg.load_model_dir(model_dir)
    assert config["streamed"] == bool(memory_budget)
    assert int(model.optimizer.iterations) == EPOCHS * STEPS  # no step trained twice, none skipped
    history = json.load(open(model_dir / artifacts.HISTORY_FILE))
    assert history["epoch"] == list(range(1, EPOCHS + 1))  # one row per epoch
    assert len(history["loss"]) == len(history["val_loss"]) == EPOCHS

    code, _, err = finish(reference)
    assert code == 0, err[-3000:]
    ref_model, _, _ = ktg.load_model_dir(reference_dir)
    # The resumed run restored weights + optimizer state and skipped the batches already seen,
    # so it ends exactly where the uninterrupted run does.
    for got, want in zip(model.get_weights(), ref_model.get_weights()):
        np.testing.assert_array_equal(got, want, err_msg=f"seed {SEED}, kills at {kills}")


@pytest.fixture(scope="module")
def model_dir(corpus_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained") / "toy"
    config = training.TrainConfig(corpus=str(corpus_file), units=8, layers=1, batch_size=8, epochs=1,
                                  steps_per_epoch=4, validation_steps=1, seed=2, sample_prompts=(),
                                  keep_generator=False)
    training.train(config, folder, print_fn=lambda *_: None, verbose=0)
    return folder


def tree_digest(folder):
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, folder).encode() + open(full, "rb").read())
    return digest.hexdigest()


@pytest.mark.slow
def test_sigkill_during_export_leaves_only_complete_versions(model_dir, tmp_path):
    base = tmp_path / "saved_models"
    first = export.export_saved_model(model_dir, base_dir=base, name="toy")
    v1 = tree_digest(first)
    folder = base / "toy"
    mid_export = []
    hidden = lambda: {n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")}  # noqa: E731
    for _ in range(3):  # the export may win the race against the kill; try again then
        before = hidden()
        proc = spawn("export", "--model", str(model_dir), "--format", "saved_model", "--name", "toy",
                     "--base-dir", str(base))
        wait_for(lambda: hidden() - before, proc, poll=0.005)
        time.sleep(RNG.uniform(0.0, 0.3))
        if proc.poll() is None:
            kill(proc)
            mid_export.append(sorted(hidden() - before))  # the killed export's own temporary folder
        else:
            proc.communicate()
        complete = export.versions(base, "toy")
        for version in complete:  # every integer version is a whole SavedModel
            assert os.path.exists(folder / str(version) / "saved_model.pb")
            assert os.path.exists(folder / str(version) / "variables" / "variables.index")
        assert not [n for n in os.listdir(folder) if not n.isdigit() and not n.startswith(".")]
        assert tree_digest(first) == v1  # the earlier version is untouched
        if mid_export and mid_export[-1]:
            break
    assert any(mid_export), f"no kill landed inside an export (seed {SEED})"
    stale = [n for n in os.listdir(folder) if n.startswith(".")]
    assert stale  # the killed export's hidden folder is still there ...
    assert ".".join(stale).count(".tmp") >= 1
    # ... is never taken for a version, and the next export cleans it up and works.
    assert all(str(v).isdigit() for v in export.versions(base, "toy"))
    from keras_textgen import cli

    assert cli.main(["export", "--model", str(model_dir), "--format", "saved_model", "--name", "toy",
                     "--base-dir", str(base)]) == 0
    names = sorted(os.listdir(folder))
    assert all(n.isdigit() for n in names), names
    newest = export.versions(base, "toy")[-1]
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder / str(newest))).signatures["serving_default"]
    out = serve(prompt=tf.constant(["the"]), max_length=tf.constant(5), temperature=tf.constant(0.0),
                top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64))
    assert out["tokens"].shape == (1, 5)


@pytest.mark.slow
def test_seeded_deterministic_training_and_generation(corpus_file, tmp_path):
    """Two trainings with --seed --deterministic (separate processes) give identical weights and text."""
    args = ["--corpus", str(corpus_file), "--units", "8", "--layers", "1", "--batch-size", "8", "--epochs", "2",
            "--steps-per-epoch", "6", "--validation-steps", "1", "--seed", "11", "--deterministic",
            "--time-budget", "none", "--no-samples", "--no-generator"]
    runs = [spawn("train", "--out", str(tmp_path / name), *args) for name in ("a", "b")]
    for proc in runs:
        code, _, err = finish(proc)
        assert code == 0, err[-3000:]
    (ma, va, _), (mb, vb, _) = ktg.load_model_dir(tmp_path / "a"), ktg.load_model_dir(tmp_path / "b")
    assert va.get_vocabulary() == vb.get_vocabulary()
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    request = dict(max_length=40, temperature=0.9, top_k=5, seed=123)
    assert ktg.generate(ma, va, ["the", "a d"], **request) == ktg.generate(mb, vb, ["the", "a d"], **request)
    histories = [json.load(open(tmp_path / name / "history.json")) for name in ("a", "b")]
    for history in histories:
        assert len(history.pop("train_seconds")) == 2  # wall-clock seconds: the one field that may differ
    assert histories[0] == histories[1]


def test_deterministic_needs_a_seed():
    with pytest.raises(errors.ConfigError, match="seed"):
        training.TrainConfig(deterministic=True).validate()


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


DAMAGES = {  # what is done to a copy of a good model directory -> the file the error must name
    "truncated model.keras": "model.keras",
    "missing vocab.json": "vocab.json",
    "vocab.json of another size": "vocab.json",
    "vocab.json of the same size, other tokens": "vocab.json",
    "truncated vocab.json": "vocab.json",
    "config.json not JSON": "config.json",
}


def _damage(folder, damage):
    vocab = ktg.Vocabulary.load(folder / "vocab.json")
    if damage == "truncated model.keras":
        _truncate(folder / "model.keras")
    elif damage == "missing vocab.json":
        os.remove(folder / "vocab.json")
    elif damage == "vocab.json of another size":
        ktg.Vocabulary(vocab.tokens + ["\u2603"]).save(folder / "vocab.json")
    elif damage == "vocab.json of the same size, other tokens":
        ktg.Vocabulary(list(reversed(vocab.tokens))).save(folder / "vocab.json")
    elif damage == "truncated vocab.json":
        _truncate(folder / "vocab.json")
    else:
        assert damage == "config.json not JSON"
        _truncate(folder / "config.json", 0.3)


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.slow
def test_corrupt_model_directory_is_one_clear_line_naming_the_file(model_dir, tmp_path, capsys, damage):
    import shutil

    from keras_textgen import cli

    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    _damage(folder, damage)
    capsys.readouterr()
    code = cli.main(["generate", "--model", str(folder), "--prompt", "the", "--max-length", "5"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-textgen generate: error: "), err
    assert str(folder / DAMAGES[damage]) in lines[0]
    assert cli.main(["generate", "--model", str(model_dir), "--prompt", "the", "--max-length", "5"]) == 0  # control


@pytest.mark.slow
def test_corrupt_model_in_a_fresh_process_prints_exactly_one_line(model_dir, tmp_path):
    """The console script itself: exit 2 and one stderr line, no traceback and no TensorFlow log noise."""
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    _damage(folder, "truncated model.keras")
    code, out, err = finish(spawn("generate", "--model", str(folder), "--prompt", "the"))
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"keras-textgen generate: error: {folder / 'model.keras'} is truncated or not a Keras model file"]


@pytest.mark.slow
def test_truncated_tflite_names_the_file(model_dir, tmp_path):
    path = export.export_tflite(model_dir, base_dir=tmp_path, name="toy")
    model, vocab, _ = ktg.load_model_dir(model_dir, compile=False)
    assert LiteGenerator(path).generate("the", max_length=3, temperature=0) == \
        ktg.generate(model, vocab, "the", max_length=3, temperature=0)
    for keep in (0.5, 0.05):
        _truncate(path, keep)
        with pytest.raises(errors.ArtifactError, match="toy.tflite"):
            LiteGenerator(path)


class _Interrupt(Exception):
    pass


class _StopAt(keras.callbacks.Callback):
    """Raises once the optimizer has taken `step` steps: an in-process stand-in for a kill."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.step:
            raise _Interrupt()


@pytest.mark.parametrize("stop_at, epoch_length", [(7, "steps_per_epoch"), (10, "steps_per_epoch"),
                                                 (13, "known cardinality")])
@pytest.mark.slow
def test_backup_and_restore_in_a_plain_model_fit(tmp_path, stop_at, epoch_length):
    """The callback in anyone's model.fit: interrupted mid-epoch (7, 13) or at an epoch's last step (10)."""
    import tensorflow as tf

    vocab = ktg.Vocabulary(list("abc "))
    windows = np.random.default_rng(0).integers(3, vocab.size, size=(20, 9)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((windows[:, :-1], windows[:, 1:])).batch(4)  # 5 batches
    epochs, steps = 3, 5
    kwargs = {"steps_per_epoch": steps} if epoch_length == "steps_per_epoch" else {}
    dataset = data.repeat() if kwargs else data

    def fit(extra, data=dataset, backup_dir=tmp_path / "backup"):
        keras.utils.set_random_seed(0)
        model = ktg.build_model(vocab, units=8, layers=1)
        cb = backup.StepBackupAndRestore(backup_dir, save_freq=2)
        history = model.fit(data, epochs=epochs, verbose=0, callbacks=[cb, *extra], shuffle=False, **kwargs)
        return model, history, cb

    with pytest.raises(_Interrupt):
        fit([_StopAt(stop_at)])
    state = backup.read_state(tmp_path / "backup")
    assert state["global_step"] <= stop_at and state["global_step"] == state["epoch"] * steps + state["step"]
    # A repeated stream can be skipped to where the backup was taken (as `keras-textgen train` does), so
    # the resumed run sees the batches the uninterrupted one would have; a finite dataset restarts each epoch.
    model, history, cb = fit([], data=dataset.skip(state["global_step"]) if kwargs else dataset)
    assert cb.restored["global_step"] == state["global_step"]
    assert int(model.optimizer.iterations) == epochs * steps  # the interrupted epoch was not trained again
    assert len(history.history["loss"]) == epochs - state["epoch"]  # one row per remaining epoch
    assert not os.path.exists(tmp_path / "backup")  # deleted when fit returns (delete_checkpoint=True)
    if kwargs:  # the weights *and* the optimizer state were restored: the same model as without the kill
        uninterrupted, _, _ = fit([], backup_dir=tmp_path / "other")
        for got, want in zip(model.get_weights(), uninterrupted.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_stale_temporaries_of_dead_writers_only_are_removed(tmp_path):
    from keras_textgen import io_utils

    with io_utils.atomic_path(tmp_path / "model.keras") as tmp:
        live = os.path.basename(tmp)  # this process is alive: its temporary stays
        dead_file = live.replace(f"-{os.getpid()}.", "-999999999.")
        open(tmp_path / dead_file, "w").write("x")
        (tmp_path / "7").mkdir()
        (tmp_path / dead_file.replace(".tmp.keras", ".tmp")).mkdir()
        (tmp_path / ".other-hidden-file").write_text("not ours")
        removed = io_utils.remove_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted([dead_file, dead_file.replace(".tmp.keras", ".tmp")])
        assert live in os.listdir(tmp_path) and ".other-hidden-file" in os.listdir(tmp_path)
        open(tmp, "w").write("done")
    assert sorted(os.listdir(tmp_path)) == [".other-hidden-file", "7", "model.keras"]


def test_finished_files_get_the_usual_permissions(tmp_path):
    from keras_textgen import io_utils

    old = os.umask(0o022)
    try:
        io_utils.atomic_write_text(tmp_path / "a.json", "{}")
        with io_utils.atomic_directory(tmp_path / "1") as folder:
            open(os.path.join(folder, "x"), "w").write("x")
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "a.json").st_mode & 0o777) == oct(0o644)  # mkstemp alone gives 0600
    assert oct(os.stat(tmp_path / "1").st_mode & 0o777) == oct(0o755)  # mkdtemp alone gives 0700
