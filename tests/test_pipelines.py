"""Each pipeline script runs (with --quick) and trains through model.fit."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHAKESPEARE_DIR, SHAKESPEARE_FILE, needs_shakespeare

pytestmark = pytest.mark.slow  # the scripts run in a child process (`runs`); `make test-fast` leaves them out

SCRIPTS = ["python_docs.py", "tiny_shakespeare.py", "ag_news_titles.py", "word_level.py"]


# Runs each `name::script::arg::arg...` in turn in this one process, as `python script args` would, and
# prints a JSON line per run: its exit code, standard output and error, and a traceback if it raised. One
# TensorFlow import for every run instead of one each; a run that fails does not stop the next one.
RUNNER = """
import contextlib, io, json, runpy, sys, traceback
sys.path.insert(0, ".")
for spec in sys.argv[1:]:
    name, script, *args = spec.split("::")
    sys.argv, out, err, code, error = [script, *args], io.StringIO(), io.StringIO(), 0, ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        code, error = 1, traceback.format_exc()
    print(json.dumps({"name": name, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue() + error}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`{name: (exit code, stdout, stderr, folder)}`: each script's --quick run, then the runs that must fail."""
    import json

    specs, folders = [], {}

    def add(name, script, *args):
        folders[name] = folder = tmp_path_factory.mktemp(name.split(".")[0])
        specs.append("::".join([name, script, *(str(a).format(folder=folder) for a in args)]))

    for script in SCRIPTS:
        extra = ["--manual-dir", SHAKESPEARE_DIR, "--data-dir", "{folder}/tfds"] if script == "tiny_shakespeare.py" else []
        if script != "tiny_shakespeare.py" or SHAKESPEARE_FILE.is_file():  # else its test skips (needs_shakespeare)
            add(script, script, "--quick", "--out", "{folder}/out", *extra)
    add("ag_news without data", "ag_news_titles.py", "--data-dir", "{folder}")
    add("shakespeare without its folder", "tiny_shakespeare.py", "--quick", "--manual-dir", "{folder}/no_such_folder",
        "--data-dir", "{folder}/tfds")
    result = subprocess.run([sys.executable, "-c", RUNNER, *specs], cwd=ROOT / "pipelines", capture_output=True,
                            text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith('{"name"'):
            run = json.loads(line)
            found[run["name"]] = (run["code"], run["stdout"], run["stderr"], folders[run["name"]])
    assert set(found) == set(folders), result.stderr[-3000:]
    return found


@pytest.mark.parametrize("script", [pytest.param(s, marks=needs_shakespeare) if s == "tiny_shakespeare.py" else s
                                    for s in SCRIPTS])
def test_pipeline_quick_run(script, runs):
    code, stdout, stderr, folder = runs[script]
    assert code == 0, stderr[-2000:] or stdout[-2000:]
    assert "[sample epoch 1" in stdout  # the LambdaCallback sampler printed during fit
    assert (folder / "out" / "model.keras").exists() and (folder / "out" / "vocab.json").exists()


# Runs a script with --help and says whether TensorFlow got loaded.
HELP_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
sys.path.insert(0, ".")
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    print("EXIT", e.code, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_pipeline_help_answers_without_loading_tensorflow(script):
    result = subprocess.run([sys.executable, "-c", HELP_PROBE, script], cwd=ROOT / "pipelines", capture_output=True,
                            text=True, timeout=120)
    assert "--quick" in result.stdout, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "EXIT 0 False"


def test_ag_news_without_network_or_data_dir_says_so(runs):
    code, _, stderr, _ = runs["ag_news without data"]
    if code == 0:
        pytest.skip("this machine has network access: the download worked")
    assert code == 2, stderr[-2000:]
    assert "ag_news_titles: cannot prepare TFDS dataset 'ag_news_subset'" in stderr
    assert "Traceback" not in stderr
    assert "--data-dir" in stderr


def test_tiny_shakespeare_without_its_folder_says_which(runs):
    code, _, stderr, folder = runs["shakespeare without its folder"]
    assert code == 2, stderr[-2000:]
    assert f"tiny_shakespeare: the TFDS manual dir {folder / 'no_such_folder'} is not a folder" in stderr
    assert "Traceback" not in stderr
