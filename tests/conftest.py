import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One intra-op thread per process, for the test processes and every child they start: the suite already runs
# two workers (and their children) on two cores, and TensorFlow's default pools (one thread per core, each op
# split over them) then compete for the same cores. One thread made in-process test files ~10 % quicker.
# Tests of the thread policy set the pool explicitly (TensorFlow reads this only when its setting is 0).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pathlib
import random
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` is a folder of the repository, not an installed package

from bench import config as bench_config  # noqa: E402

# Where the benchmark reads it: $TINY_SHAKESPEARE_DIR, else ../shared/data/tiny_shakespeare beside the clone.
SHAKESPEARE_DIR = pathlib.Path(bench_config.SHAKESPEARE_DIR)
SHAKESPEARE_FILE = SHAKESPEARE_DIR / "input.txt"
SHAKESPEARE_SKIP = (f"Tiny Shakespeare not found at {SHAKESPEARE_FILE}: "
                    "set TINY_SHAKESPEARE_DIR to the folder holding input.txt to run this test")

# A test marked `needs_shakespeare` reads SHAKESPEARE_FILE. A fresh clone without it skips those tests
# (one line saying how to enable them) instead of failing; CI, which has ../shared, runs them.
needs_shakespeare = pytest.mark.needs_shakespeare


# The reliability tests (test_reliability, test_distribute) kill runs at random moments drawn from this
# seed. Under CI (the CI variable set, as .ci/run does) it is fixed, so a red run replays; elsewhere each
# session draws one, so local runs try other schedules. Every failure message names it, and
# RELIABILITY_SEED=n replays a schedule. Set here, before the xdist workers start, so all share it.
FIXED_RELIABILITY_SEED = 20261201


def pytest_configure(config):
    if not os.environ.get("RELIABILITY_SEED"):
        seed = FIXED_RELIABILITY_SEED if os.environ.get("CI") else random.SystemRandom().randrange(10**6)
        os.environ["RELIABILITY_SEED"] = str(seed)


def pytest_report_header(config):
    return f"reliability seed: {os.environ['RELIABILITY_SEED']} (RELIABILITY_SEED=n replays; fixed when CI is set)"


def reliability_seed():
    return int(os.environ["RELIABILITY_SEED"])


# The longest test files, longest first. `make test` hands whole files to its workers (xdist's loadfile) in
# collection order (--no-loadscope-reorder; xdist would otherwise start with the files of most tests), which
# is alphabetical by default: a long file that comes late leaves one worker running it alone at the end.
# Started first, the short files fill in around them. (Order from the durations of whole runs.)
LONGEST_FIRST = ["test_bench.py", "test_reliability.py", "test_distribute.py", "test_export.py", "test_run_end.py",
                 "test_csv_stream.py", "test_cli.py", "test_training.py", "test_sources.py", "test_generation.py",
                 "test_pipelines.py", "test_keras_load.py", "test_threads.py", "test_bad_inputs.py",
                 "test_generator_cache.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    if SHAKESPEARE_FILE.is_file():
        return
    skip = pytest.mark.skip(reason=SHAKESPEARE_SKIP)
    for item in items:
        if item.get_closest_marker("needs_shakespeare"):
            item.add_marker(skip)

LINES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the bird sang a song",
    "cats and dogs are friends",
    "a song for the park",
    "the mat is red",
    "dogs ran and cats sat",
    "birds sang in the morning",
    "the red bird and the cat",
    "a friend in the park",
    "morning song of the dog",
    "on the mat sat a cat",
]


@pytest.fixture(scope="session")
def lines():
    return list(LINES)


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def vocab():
    import keras_textgen as ktg

    return ktg.Vocabulary.adapt(LINES)


@pytest.fixture(scope="session")
def tiny_model(vocab):
    """A tiny trained model: a few steps, enough to be deterministic, not good."""
    import keras

    import keras_textgen as ktg

    keras.utils.set_random_seed(0)
    model = ktg.build_model(vocab, units=16, layers=2)
    ds = ktg.make_dataset(LINES, vocab, batch_size=4, seed=0)
    model.fit(ds, epochs=2, verbose=0)
    return model


def cli_in_process(capsys, args):
    """`keras_textgen.cli.main(args)` in this process -> `(exit code, stdout, stderr)`.

    An argparse error (`SystemExit`) gives its code too. For the CLI's error paths: a child process
    each would cost a TensorFlow import and check nothing more.
    """
    from keras_textgen import cli

    capsys.readouterr()
    try:
        code = cli.main(list(args))
    except SystemExit as e:  # argparse
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fresh_process_json(code):
    """Runs `python -c code` in a fresh process; asserts it succeeded and returns its last line of stdout as JSON."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_lines_corpus(folder):
    """Writes `folder/lines.txt`, LINES four times, one per line, and returns its path."""
    corpus = folder / "lines.txt"
    corpus.write_text("\n".join(LINES * 4) + "\n", encoding="utf-8")
    return corpus


def train_tiny_model_dir(folder, **config):
    """Trains a tiny model on LINES with `keras_textgen.train` and returns its model directory.

    No samples are printed unless `sample_prompts` is given, and the traced generation loop is not kept
    unless `keep_generator=True`: tracing either loop is a third of a tiny run.
    """
    from keras_textgen import training

    corpus = write_lines_corpus(folder)
    # No time budget: its schedule follows the clock, and these runs are compared for exact weights.
    settings = dict(corpus=str(corpus), batch_size=8, epochs=1, steps_per_epoch=6, seed=0, time_budget=None,
                    sample_prompts=(), keep_generator=False)
    settings.update(config)
    training.train(training.TrainConfig(**settings), folder / "model", print_fn=lambda *_: None, verbose=0)
    return folder / "model"
