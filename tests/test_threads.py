"""The CPU thread policy (`keras_textgen.threads`) and the CLI's --intra-op-threads."""

import json

import pytest

from keras_textgen import errors
from keras_textgen import threads
from conftest import LINES, fresh_process_json
from test_cli import TINY, run_cli


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (3, 0), (64, 0)])
def test_auto_is_one_thread_on_small_cpu_machines(monkeypatch, cores, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads.resolve("auto") == expected  # no GPU on the test machines


@pytest.mark.parametrize("value", [0, 1, 7])
def test_explicit_counts_pass_through(value):
    assert threads.resolve(value) == value


@pytest.mark.parametrize("value", [-1, 1.5, "2", None, True])
def test_bad_counts_are_refused(value):
    with pytest.raises(errors.ConfigError, match="'auto' or an integer >= 0"):
        threads.resolve(value)


@pytest.mark.slow
def test_configure_threads_sets_the_pool_in_a_fresh_process():
    got = fresh_process_json(
        "import json, tensorflow as tf, keras_textgen as ktg\n"
        "applied = ktg.configure_threads(3)\n"
        "tf.constant(1.0) + 1.0\n"
        "print(json.dumps([applied, tf.config.threading.get_intra_op_parallelism_threads()]))")
    assert got == [3, 3]


@pytest.mark.slow
def test_auto_after_tensorflow_started_keeps_the_default_and_explicit_is_an_error():
    got = fresh_process_json(
        "import json, tensorflow as tf, keras_textgen as ktg\n"
        "tf.constant(1.0) + 1.0\n"
        "auto = ktg.configure_threads('auto')\n"
        "try:\n"
        "    ktg.configure_threads(1); err = None\n"
        "except ktg.errors.ConfigError as e:\n"
        "    err = str(e)\n"
        "print(json.dumps([auto, tf.config.threading.get_intra_op_parallelism_threads(), err]))")
    assert got[0] is None and got[1] == 0
    assert "before TensorFlow runs its first op" in got[2]


def cli_train(folder, *flag):
    """Trains with the console script in a child process (TINY, no samples, `flag`); returns the model directory."""
    corpus = folder / "lines.txt"
    corpus.write_text("\n".join(LINES * 3) + "\n")
    out = run_cli("train", "--corpus", str(corpus), "--out", str(folder / "model"), *TINY, "--no-samples", *flag)
    assert out.returncode == 0, out.stderr
    return folder / "model"


def threads_in_force(model_dir):
    return json.loads((model_dir / "config.json").read_text())["intra_op_threads_in_force"]


@pytest.fixture(scope="module")
def auto_model_dir(tmp_path_factory):
    """A model the console script trained with the default setting (auto)."""
    return cli_train(tmp_path_factory.mktemp("auto"))


@pytest.mark.slow
def test_cli_train_applies_an_explicit_setting_and_records_it(tmp_path):
    assert threads_in_force(cli_train(tmp_path, "--intra-op-threads", "3", "--no-generator")) == 3


@pytest.mark.slow
def test_cli_train_applies_the_auto_setting_and_records_it(auto_model_dir):
    assert threads_in_force(auto_model_dir) == threads.resolve("auto")


@pytest.mark.slow
def test_cli_generate_and_evaluate_apply_the_auto_setting(auto_model_dir):
    """`generate` and `evaluate` set the pool as `train` does (one thread on a small CPU-only machine)."""
    model_dir = auto_model_dir
    got = fresh_process_json(
        "import json, sys, contextlib, io\n"
        "from keras_textgen import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    codes = [cli.main(['generate', '--model', {str(model_dir)!r}, '--prompt', 'the', '--max-length', '5']),\n"
        f"             cli.main(['evaluate', '--model', {str(model_dir)!r}])]\n"
        "import tensorflow as tf\n"
        "print(json.dumps([codes, tf.config.threading.get_intra_op_parallelism_threads(),\n"
        "                  'matplotlib' in sys.modules]))")
    # ...and neither loads matplotlib, which Keras's import would (keras_textgen._compat.matplotlib_held_back)
    assert got == [[0, 0], threads.resolve("auto"), False]
