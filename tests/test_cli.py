"""The command line, end to end on tiny models."""

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import cli
from conftest import LINES, ROOT, cli_in_process

pytestmark = pytest.mark.slow  # the CLI end to end: a training, then commands in this and child processes

TINY = ["--units", "16", "--layers", "1", "--batch-size", "4", "--epochs", "2", "--steps-per-epoch", "3",
        "--seed", "1", "--backup-every", "2"]


def run_cli(*args):
    """Runs the installed console script in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    exe = os.path.join(os.path.dirname(sys.executable), "keras-textgen")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=600)


def run_here(capsys, *args):
    """`cli.main(args)` in this process, as a `CompletedProcess` like `run_cli`'s (see `cli_in_process`).

    The real console script's one-line errors are checked by the `run_cli` cases below and by
    test_python_dash_m_runs_the_same_command_line.
    """
    return subprocess.CompletedProcess(args, *cli_in_process(capsys, args))


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """`(corpus, model directory, what train printed)` of one CLI training, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "lines.txt"
    corpus.write_text("\n".join(LINES * 3) + "\n")
    model_dir = folder / "model"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["train", "--corpus", str(corpus), "--out", str(model_dir), *TINY, "--sample-prompt", "the"])
    assert code == 0
    return corpus, model_dir, printed.getvalue()


@pytest.fixture(scope="module")
def trained(training_run):
    return training_run[:2]


def test_train_writes_the_model_directory(trained):
    _, model_dir = trained
    names = set(os.listdir(model_dir))
    assert {"model.keras", "vocab.json", "config.json", "history.json", "history.png", "checkpoints", "logs"} <= names
    assert "run" not in names and "backup" not in names  # in-progress state is gone once finished
    history = json.loads((model_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert len(history["val_loss"]) == 2 and len(history["val_bits_per_token"]) == 2
    assert (model_dir / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind


def test_train_prints_samples(training_run):
    out = training_run[2]
    assert "[sample epoch 1 greedy] 'the' -> 'the" in out
    assert "[sample epoch 2 T=0.8]" in out


def test_generate_is_reproducible_across_processes(trained):
    _, model_dir = trained
    args = ["generate", "--model", str(model_dir), "--prompt", "the", "--prompt", "a d", "--max-length", "30",
            "--temperature", "0.9", "--top-k", "5", "--seed", "3", "--json"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    texts = json.loads(first.stdout)
    assert len(texts) == 2
    assert first.stdout == second.stdout


def test_generate_plain_output_one_per_prompt(trained, capsys):
    _, model_dir = trained
    assert cli.main(["generate", "--model", str(model_dir), "--prompt", "the", "--prompt", "a",
                     "--max-length", "10", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    first, second = out.split("-" * 40 + "\n")
    assert first.startswith("the") and second.startswith("a")


def test_generate_jit_compile_gives_the_greedy_text(trained, capsys):
    _, model_dir = trained
    args = ["generate", "--model", str(model_dir), "--prompt", "the", "--prompt", "a d", "--max-length", "40",
            "--temperature", "0", "--json"]
    assert cli.main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main([*args, "--jit-compile"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


def test_evaluate_and_info(trained, capsys):
    corpus, model_dir = trained
    assert cli.main(["evaluate", "--model", str(model_dir), "--corpus", str(corpus)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"validation loss: ([0-9.]+) nats/char, ([0-9.]+) bits/char \(([0-9,]+) targets\)", out)
    assert found, out
    # The reference: every real target of the validation lines, each weighted alike, in NumPy.
    model, vocab, config = ktg.load_model_dir(str(model_dir), compile=False)
    validation = ktg.corpus.load(str(corpus), mode=config.get("mode")).validation
    total = count = 0
    for x, y in ktg.make_dataset(validation, vocab, mode=config.get("mode"), batch_size=64, shuffle=False):
        logits = model(x).numpy().astype(np.float64)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        y = y.numpy()
        total -= np.take_along_axis(log_probs, y[..., None], -1)[..., 0][y != 0].sum()
        count += int((y != 0).sum())
    assert float(found[1]) == pytest.approx(total / count, abs=1e-4)
    assert float(found[2]) == pytest.approx(total / count / math.log(2), abs=1e-4)
    assert int(found[3].replace(",", "")) == count
    assert cli.main(["info", "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "vocabulary:" in out and "pad=0, OOV=1, EOS=2" in out
    assert "LSTM(16)" in out and "parameters:" in out and "history:" in out


def test_headerless_ag_news_csv_trains_by_column_number_and_evaluate_reuses_the_recorded_corpus(tmp_path, capsys):
    from test_corpus import AG_NEWS_ROWS, write_ag_news_csv

    corpus = write_ag_news_csv(tmp_path / "train.csv")
    model_dir = tmp_path / "ag"
    assert cli.main(["train", "--corpus", str(corpus), "--column", "2", "--out", str(model_dir), *TINY,
                     "--no-samples", "--no-generator"]) == 0
    config = json.loads((model_dir / "config.json").read_text())
    assert config["column"] == "2" and config["header"] is None and config["mode"] == "lines"
    vocab = ktg.Vocabulary.load(str(model_dir / "vocab.json"))
    title_chars = set("".join(row[1] for row in AG_NEWS_ROWS))
    assert set(vocab.get_vocabulary()[3:]) <= title_chars  # trained on titles only, not descriptions
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(model_dir)]) == 0  # no --corpus: the recorded one
    recorded = capsys.readouterr().out
    assert cli.main(["evaluate", "--model", str(model_dir), "--corpus", str(corpus), "--column", "2"]) == 0
    explicit = capsys.readouterr().out
    assert recorded == explicit and "validation loss:" in recorded
    assert cli.main(["evaluate", "--model", str(model_dir), "--corpus", str(corpus), "--column", "3"]) == 0
    assert capsys.readouterr().out != recorded  # the flags do choose: descriptions score differently


def test_evaluate_without_corpus_when_none_is_recorded_or_it_moved(trained, tmp_path, capsys):
    import shutil

    _, model_dir = trained
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "corpus": str(tmp_path / "moved.txt")}))
    assert cli.main(["evaluate", "--model", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "corpus file not found" in err and "the corpus recorded in" in err and len(err.strip().splitlines()) == 1
    del config["corpus"]
    (copy / "config.json").write_text(json.dumps(config))
    assert cli.main(["evaluate", "--model", str(copy)]) == 2
    assert "records no training corpus: name one with --corpus" in capsys.readouterr().err


def test_interrupted_train_says_rerunning_resumes_and_it_does(tmp_path, monkeypatch, capsys):
    import keras

    from keras_textgen import training

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # Ctrl-C in epoch 2, after epoch 1 was backed up
                raise KeyboardInterrupt

    default_callbacks = training.default_callbacks
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    args = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "m"), *TINY, "--no-samples", "--no-generator"]
    monkeypatch.setattr(training, "default_callbacks", lambda *a, **k: default_callbacks(*a, **k) + [CtrlC()])
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert err.strip() == (f"keras-textgen train: interrupted; run the same command again to resume from the last "
                           f"backup in {tmp_path / 'm'}")
    monkeypatch.setattr(training, "default_callbacks", default_callbacks)
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Resuming the unfinished run" in out, out
    assert "Epoch 1/2" not in out  # epoch 1 is not trained again
    # --no-samples, TrainConfig(sample_prompts=()): no sampler, and epochs end without one (they once failed there)
    assert "Epoch 2/2" in out and "[sample" not in out
    assert json.loads((tmp_path / "m" / "history.json").read_text())["epoch"] == [1, 2]


def test_help_for_every_command():
    for command in ("train", "generate", "evaluate", "info", "export"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: keras-textgen" in result.stdout


# Runs the CLI's main in a fresh process, then reports which heavy modules it imported.
_IMPORT_PROBE = """
import json, sys
from keras_textgen.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "loaded": sorted(m for m in ("tensorflow", "keras", "numpy") if m in sys.modules)}))
"""


def _probe_imports(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *args], capture_output=True, text=True, env=env,
                            timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["evaluate", "--help"],
                                  ["train", "--corpus", "c.txt", "--out", "m", "--epochs", "0"],
                                  ["no-such-command"]])
def test_help_and_argument_errors_do_not_import_tensorflow(args):
    report, stderr = _probe_imports(*args)
    assert report["code"] in (0, 2), stderr
    assert report["loaded"] == [], f"{args} imported {report['loaded']}"
    if report["code"] == 2:
        assert len(stderr.strip().splitlines()) == 1 and "error:" in stderr


def test_a_command_that_runs_does_import_tensorflow(tmp_path):
    """The probe above sees TensorFlow when it is imported: its empty list is not vacuous."""
    report, stderr = _probe_imports("info", "--model", str(tmp_path / "missing"))
    assert report["code"] == 2 and "model directory not found" in stderr
    assert "tensorflow" in report["loaded"]


def test_python_dash_m_runs_the_same_command_line(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    help_ = subprocess.run([sys.executable, "-m", "keras_textgen", "--help"], capture_output=True, text=True, env=env,
                           timeout=600)
    assert help_.returncode == 0 and "usage: keras-textgen" in help_.stdout and "train" in help_.stdout
    missing = tmp_path / "missing.txt"
    bad = subprocess.run([sys.executable, "-m", "keras_textgen", "train", "--corpus", str(missing), "--out",
                          str(tmp_path / "model")], capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "corpus file not found" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "model").exists()


@pytest.mark.parametrize("make_corpus, message", [
    (lambda d: d / "missing.txt", "corpus file not found"),
    (lambda d: _write(d / "empty.txt", b""), "is empty"),
    (lambda d: _write(d / "blank.txt", b"\n \n\t\n"), "is empty"),
    (lambda d: _write(d / "latin1.txt", b"caf\xe9\nthe\n"), "not UTF-8"),
])
def test_bad_corpus_exits_2_and_keeps_the_existing_model(trained, tmp_path, make_corpus, message, capsys):
    _, model_dir = trained
    before = {n: (model_dir / n).read_bytes() for n in ("model.keras", "vocab.json", "history.json")}
    result = run_here(capsys, "train", "--corpus", str(make_corpus(tmp_path)), "--out", str(model_dir), "--force",
                      *TINY)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.startswith("keras-textgen train: error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert {n: (model_dir / n).read_bytes() for n in before} == before


def test_finished_model_is_not_replaced_without_force(trained, capsys):
    corpus, model_dir = trained
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(model_dir), *TINY]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "/nonexistent/model", "--prompt", "x"], "model directory not found"),
    # In a child process: the console script loads TensorFlow and the model, and still prints one line.
    (["CHILD", "generate", "--model", "MODEL", "--prompt", "x", "--temperature", "-1"], "temperature"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--top-p", "0"], "top_p"),
    (["generate", "--model", "MODEL", "--prompt", "x", "--max-length", "0"], "max_length"),
    (["train", "--corpus", "CORPUS", "--out", "OUT", "--batch-size", "0"], "positive integer"),
    (["train", "--corpus", "CORPUS", "--out", "OUT", "--mode", "chunks", "--seq-len", "5000"], "lower --seq-len"),
    (["train", "--corpus", "tfds:no_such_dataset_xyz", "--out", "OUT"], "unknown TFDS dataset"),
    (["train", "--corpus", "CORPUS", "--out", "OUT", "--no-samples", "--sample-prompt", "a"], "not allowed with"),
])
def test_bad_arguments_exit_2_with_one_line(trained, tmp_path, args, message, capsys):
    corpus, model_dir = trained
    args = [{"MODEL": str(model_dir), "CORPUS": str(corpus), "OUT": str(tmp_path / "out")}.get(a, a) for a in args]
    result = run_cli(*args[1:]) if args[0] == "CHILD" else run_here(capsys, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out" / "model.keras").exists()


def _write(path, data):
    path.write_bytes(data)
    return path
