"""One writer per model directory and per export: a second run is refused, a killed run's lock is taken over."""

import json
import os
import signal
import subprocess
import sys

import pytest

from keras_textgen import cli, errors, export, lock
from conftest import LINES, ROOT

# Takes the lock file argv[1] for command argv[2], says READY, and keeps it until killed.
HOLDER = """
import sys, time
from keras_textgen import lock
held = lock.acquire(sys.argv[1], sys.argv[2])
print("READY", flush=True)
time.sleep(600)
"""


def hold_in_another_process(path, command="train"):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), command], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "READY"
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_a_held_lock_is_refused_with_its_holder_and_a_killed_one_is_taken_over(tmp_path):
    path = tmp_path / "model" / ".lock"
    holder = hold_in_another_process(path)
    try:
        with pytest.raises(errors.BusyError) as refused:
            lock.acquire(path, "train")
        message = str(refused.value)
        assert f"{tmp_path / 'model'} is in use by train (PID {holder.pid} on " in message
        assert "\n" not in message
    finally:
        kill(holder)
    assert json.loads(path.read_text())["pid"] == holder.pid  # the killed holder left its file behind
    taken = lock.acquire(path, "train")
    assert taken.stale_holder["pid"] == holder.pid  # ... and it was taken over as stale
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(errors.BusyError, match=rf"PID {os.getpid()}"):
        lock.acquire(path, "export")  # held by us now: a second holder is refused, even in-process
    taken.release()
    assert not path.exists() and (tmp_path / "model").is_dir()  # the folder was there before: kept


def test_a_lock_leaves_no_folder_it_created(tmp_path):
    with lock.hold_directory(tmp_path / "new", "train"):
        assert (tmp_path / "new" / ".lock").exists()
    assert not (tmp_path / "new").exists()


TINY = ["--units", "8", "--layers", "1", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2", "--seed", "1",
        "--no-samples", "--no-generator"]


@pytest.mark.slow  # trains and exports
def test_train_and_export_refuse_a_target_in_use_and_take_over_a_dead_one(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    model_dir = tmp_path / "m"
    train = ["train", "--corpus", str(corpus), "--out", str(model_dir), *TINY]
    holder = hold_in_another_process(model_dir / ".lock", "train")
    try:
        assert cli.main(train) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"keras-textgen train: error: {model_dir} is in use by train (PID {holder.pid} ")
        assert len(err.splitlines()) == 1
        assert sorted(os.listdir(model_dir)) == [".lock"]  # nothing written beside the holder's lock
    finally:
        kill(holder)
    assert cli.main(train) == 0  # the dead holder's lock is stale: taken over
    assert ".lock" not in os.listdir(model_dir) and (model_dir / "model.keras").exists()

    base = tmp_path / "saved_models"
    holder = hold_in_another_process(base / ".toy.lock", "export")
    try:
        for fmt in ("saved_model", "tflite"):
            args = ["export", "--model", str(model_dir), "--format", fmt, "--base-dir", str(base), "--name", "toy"]
            assert cli.main(args) == 2
            err = capsys.readouterr().err.strip()
            assert f"{base / 'toy'} is in use by export (PID {holder.pid} " in err and len(err.splitlines()) == 1
        assert sorted(os.listdir(base)) == [".toy.lock"]
    finally:
        kill(holder)
    path = export.export_saved_model(str(model_dir), base_dir=base, name="toy")
    assert path == os.path.join(str(base), "toy", "1") and os.listdir(base) == ["toy"]
