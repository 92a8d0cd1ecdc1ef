"""tf.distribute on one machine: MirroredStrategy over 2 logical CPUs, MultiWorkerMirroredStrategy over 2 processes.

Tolerance: a distributed run must match a single-device run on the same
global batch (per-replica batch x replicas) to 1e-4 relative in every
epoch's training and validation loss. Both runs start from the same seeded
weights and see the same batches, so the only difference allowed is the
order of floating-point sums across replicas (in practice they agree to
float32 precision).
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import artifacts, backup, vocab as vocab_lib
from conftest import LINES, reliability_seed

pytestmark = pytest.mark.slow  # strategies over logical devices and worker processes; `make test-fast` leaves them out

RTOL = 1e-4
EXE = os.path.join(os.path.dirname(sys.executable), "keras-textgen")
SEED = reliability_seed()
EPOCHS, STEPS, PER_REPLICA = 3, 6, 4
COMMON = ["--mode", "chunks", "--seq-len", "16", "--units", "8", "--layers", "1", "--epochs", str(EPOCHS),
          "--steps-per-epoch", str(STEPS), "--validation-steps", "1", "--seed", "3", "--backup-every", "2",
          "--no-samples", "--no-generator", "--time-budget", "none",
          "--dropout", "0", "--recurrent-dropout", "0"]  # masks differ between one device and replicas by construction
# The mirrored run also prints samples (the sampler under a strategy); the other runs go without (its tracing is
# a quarter of a tiny run), and the multi-worker run must still end on the mirrored child's one-device weights.
WITH_SAMPLES = [a for a in COMMON if a != "--no-samples"] + ["--sample-prompt", "a"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "lines.txt"
    path.write_text("\n".join(LINES * 20) + "\n")
    return path


def env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1", **extra}


def history(model_dir):
    return json.load(open(os.path.join(model_dir, artifacts.HISTORY_FILE)))


def assert_same_losses(got, want):
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, err_msg=key)


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf

    # Two logical CPU devices; this must happen before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_textgen import cli, training

    corpus, out, per_replica = sys.argv[1], sys.argv[2], int(sys.argv[3])
    args = json.loads(sys.argv[4])
    code = cli.main(["train", "--corpus", corpus, "--out", out + "/mirrored", "--strategy", "mirrored",
                     "--batch-size", str(per_replica), *args])
    assert code == 0
    # The Python API on one device, with the same global batch.
    parser = cli.build_parser()
    ns = parser.parse_args(["train", "--corpus", corpus, "--out", out + "/single", "--batch-size",
                            str(2 * per_replica), *args])
    config = training.TrainConfig(corpus=corpus, mode=ns.mode, seq_len=ns.seq_len, units=ns.units, layers=ns.layers,
                                  epochs=ns.epochs, steps_per_epoch=ns.steps_per_epoch,
                                  validation_steps=ns.validation_steps, seed=ns.seed, batch_size=ns.batch_size,
                                  backup_every=ns.backup_every, sample_prompts=tuple(ns.sample_prompts),
                                  time_budget=ns.time_budget, dropout=ns.dropout, recurrent_dropout=ns.recurrent_dropout,
                                  keep_generator=not ns.no_generator)
    training.train(config, out + "/single", print_fn=lambda *_: None, verbose=0)
    print(json.dumps({"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}))
""")


@pytest.fixture(scope="module")
def mirrored_run(corpus, tmp_path_factory):
    """The MIRRORED child: `folder/mirrored` over 2 logical CPUs, `folder/single` on one device with the global
    batch (the reference of the multi-worker test too). Returns `(folder, the child's stdout)`."""
    folder = tmp_path_factory.mktemp("mirrored")
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(corpus), str(folder), str(PER_REPLICA),
                             json.dumps(WITH_SAMPLES)], capture_output=True, text=True, timeout=600, env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result.stdout


def test_mirrored_over_two_logical_cpus_matches_one_device(mirrored_run):
    folder, stdout = mirrored_run
    assert len(json.loads(stdout.strip().splitlines()[-1])["devices"]) == 2
    assert f"{2} replicas" in stdout and "[sample epoch 3 greedy] 'a' -> " in stdout
    config = json.load(open(folder / "mirrored" / artifacts.CONFIG_FILE))
    assert (config["replicas"], config["global_batch_size"]) == (2, 2 * PER_REPLICA)
    assert_same_losses(history(folder / "mirrored"), history(folder / "single"))
    assert int(ktg.load_model_dir(folder / "mirrored")[0].optimizer.iterations) == EPOCHS * STEPS


ON_DEVICES = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf

    corpus, out, devices, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    from keras_textgen import cli

    code = cli.main(["train", "--corpus", corpus, "--out", out, "--strategy", "mirrored", *args])
    print(json.dumps({"exit": code, "wrote": os.path.exists(out)}))
""")


@pytest.mark.parametrize("devices", [1, 2])
def test_several_steps_per_call_run_with_one_replica_and_are_refused_with_two(corpus, tmp_path, devices):
    # Keras 3's multi-step loop fails under MirroredStrategy with 2 replicas (keras-team/keras#19246):
    # without the check that run dies with an InvalidArgumentError traceback after writing its config.
    args = list(COMMON) + ["--batch-size", str(PER_REPLICA), "--steps-per-execution", "2"]
    args[args.index("--validation-steps") + 1] = "2"  # a count that 2 divides, so only the replicas refuse it
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", ON_DEVICES, str(corpus), str(out), str(devices), *args],
                            capture_output=True, text=True, timeout=600, env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("keras-textgen")]
    if devices == 1:
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"exit": 0, "wrote": True}, errors
        config = json.load(open(out / artifacts.CONFIG_FILE))
        assert (config["replicas"], config["steps_per_execution_in_force"]) == (1, 2)
        assert int(ktg.load_model_dir(out)[0].optimizer.iterations) == EPOCHS * STEPS
    else:
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"exit": 2, "wrote": False}
        assert errors == ["keras-textgen train: error: steps_per_execution=2 does not run with 2 replicas (Keras "
                          "3's multi-step loop under a distribution strategy, keras-team/keras#19246); leave it unset"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_workers(corpus, out):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [EXE, "train", "--corpus", str(corpus), "--out", str(out), "--strategy", "multi-worker",
             "--batch-size", str(PER_REPLICA), *COMMON],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(TF_CONFIG=tf_config)))
    return procs


def wait_all(procs, timeout=300):
    results = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in results]


def test_multi_worker_matches_one_device_and_resumes_after_a_worker_is_killed(corpus, mirrored_run, tmp_path):
    """Two workers (TF_CONFIG, 127.0.0.1) with half the global batch each, killed and restarted.

    Worker 1 is killed at a random moment after the chief's first backup, then the chief (as a
    cluster manager restarts a failed job); both are restarted and resume from the chief's last
    backup. The run must end where a one-device run with the global batch ends (`mirrored_run`'s).
    """
    single = mirrored_run[0] / "single"
    out = tmp_path / "workers"
    procs = start_workers(corpus, out)
    backup_dir = out / artifacts.BACKUP_DIR
    deadline = time.monotonic() + 240
    while not (backup.read_state(backup_dir) or {}).get("global_step"):
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(random.Random(SEED).uniform(0.0, 0.5))
    procs[1].send_signal(signal.SIGKILL)
    time.sleep(0.2)
    if procs[0].poll() is None:
        procs[0].send_signal(signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=60)
    state = backup.read_state(backup_dir)
    assert state["global_step"] < EPOCHS * STEPS, f"the run finished before the kill (seed {SEED})"

    chief_out, worker_out = wait_all(start_workers(corpus, out))
    assert "2 replicas" in chief_out
    assert (f"Resuming from the backup at epoch {state['epoch'] + 1}, step {state['step']} "
            f"(global step {state['global_step']})") in chief_out
    assert "Saved" in chief_out and "Saved" not in worker_out  # only the chief writes the model directory
    model = ktg.load_model_dir(out)[0]
    assert int(model.optimizer.iterations) == EPOCHS * STEPS
    got, want = history(out), history(single)
    assert got["epoch"] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=RTOL, err_msg=f"seed {SEED}")
    whole_epochs = [e for e in range(EPOCHS) if not (e == state["epoch"] and state["step"])]  # not cut by the kill
    np.testing.assert_allclose([got["loss"][e] for e in whole_epochs], [want["loss"][e] for e in whole_epochs],
                               rtol=RTOL, err_msg=f"seed {SEED}")
    reference_model = ktg.load_model_dir(single)[0]
    for a, b in zip(model.get_weights(), reference_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6, err_msg=f"seed {SEED}, state {state}")


SHARDS = textwrap.dedent("""
    import json, os, sys
    from keras_textgen import distribute, preparation, sources, training, vocab

    config = training.TrainConfig(corpus=sys.argv[1], mode="chunks", seq_len=8, batch_size=2, units=8, seed=1,
                                  memory_budget=0, strategy="multi-worker", time_budget=None)
    strategy = distribute.get_strategy(config.strategy)
    checked, counted = [], []  # the files whose heads this worker checked; what its vocabulary pass read
    check_text = sources.check_text
    sources.check_text = lambda path, **kw: checked.append(os.path.basename(path)) or check_text(path, **kw)
    count = vocab.count
    vocab.count = lambda texts, **kw: counted.append(count(texts, **kw)) or counted[-1]
    prepared = preparation.prepare(config, replicas=strategy.num_replicas_in_sync, workers=distribute.workers(config),
                                   strategy=strategy)
    tokens = prepared.vocab.get_vocabulary()
    seen = set()
    for i, (x, _) in enumerate(strategy.experimental_distribute_dataset(prepared.train_ds)):
        if i == 2 * prepared.pass_steps:  # two passes of the repeated stream
            break
        for local in strategy.experimental_local_results(x):
            seen.update(tokens[t] for t in local.numpy().ravel().tolist())
    print(json.dumps({"letters": sorted(t for t in seen if t.isalpha()), "files": len(prepared.corpus.files),
                      "counted": sorted(t for c in counted for t in c.tokens if t.isalpha()), "checked": checked,
                      "vocabulary": tokens, "tokens": prepared.tokens, "steps": prepared.pass_steps}))
""")


def test_multi_worker_reads_a_streamed_multi_file_corpus_one_file_per_worker(tmp_path):
    """Four files, each of its own letter; worker i of 2 must check, count and train on files i and i+2 only."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, letter in enumerate("abcd"):
        (folder / f"part{i}.txt").write_text("".join(f"{letter * (1 + n % 5)} {letter}\n" for n in range(200)))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = [subprocess.Popen([sys.executable, "-c", SHARDS, str(folder / "*.txt")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                         "index": i}})))
             for i in range(2)]
    outs = wait_all(procs)
    seen = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    assert [{key: got[key] for key in ("letters", "counted", "checked", "files")} for got in seen] == [
        {"letters": ["a", "c"], "counted": ["a", "c"], "checked": ["part0.txt", "part2.txt"], "files": 4},
        {"letters": ["b", "d"], "counted": ["b", "d"], "checked": ["part1.txt", "part3.txt"], "files": 4}]
    # The workers' counts are merged: one vocabulary of all four files, and the same steps per pass.
    assert seen[0]["vocabulary"] == seen[1]["vocabulary"] and set("abcd") <= set(seen[0]["vocabulary"])
    single = ktg.corpus.load(str(folder / "*.txt"), mode="chunks", memory_budget=0)
    assert seen[0]["tokens"] == seen[1]["tokens"] == vocab_lib.count(single.train).total
    assert seen[0]["steps"] == seen[1]["steps"]
    # And a whole run on it trains and saves.
    out = tmp_path / "model"
    procs = []
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [EXE, "train", "--corpus", str(folder), "--out", str(out), "--strategy", "multi-worker", "--memory-budget",
             "0", "--batch-size", "2", "--mode", "chunks", "--seq-len", "8", "--units", "8", "--epochs", "2",
             "--validation-steps", "2", "--time-budget", "none", "--seed", "1", "--no-samples", "--no-generator"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(TF_CONFIG=tf_config)))
    chief_out, _ = wait_all(procs)
    assert "4 files" in chief_out and "streamed" in chief_out and "Saved" in chief_out
