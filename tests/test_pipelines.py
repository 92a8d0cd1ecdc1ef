"""Each pipeline script runs (with --quick) and trains through model.fit."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHAKESPEARE_DIR, needs_shakespeare

pytestmark = pytest.mark.slow  # every test runs a pipeline script in a child process; `make test-fast` leaves them out

SCRIPTS = ["python_docs.py", "tiny_shakespeare.py", "ag_news_titles.py", "word_level.py"]


@pytest.mark.parametrize("script", [pytest.param(s, marks=needs_shakespeare) if s == "tiny_shakespeare.py" else s
                                    for s in SCRIPTS])
def test_pipeline_quick_run(script, tmp_path):
    extra = ["--manual-dir", str(SHAKESPEARE_DIR), "--data-dir", str(tmp_path / "tfds")] \
        if script == "tiny_shakespeare.py" else []
    result = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path / "out"), *extra],
        cwd=ROOT / "pipelines", capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[sample epoch 1" in result.stdout  # the LambdaCallback sampler printed during fit
    assert (tmp_path / "out" / "model.keras").exists() and (tmp_path / "out" / "vocab.json").exists()


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


def test_ag_news_without_network_or_data_dir_says_so(tmp_path):
    result = subprocess.run([sys.executable, "ag_news_titles.py", "--data-dir", str(tmp_path)],
                            cwd=ROOT / "pipelines", capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode == 0:
        pytest.skip("this machine has network access: the download worked")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "ag_news_titles: cannot prepare TFDS dataset 'ag_news_subset'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "--data-dir" in result.stderr


def test_tiny_shakespeare_without_its_folder_says_which(tmp_path):
    missing = tmp_path / "no_such_folder"
    result = subprocess.run([sys.executable, "tiny_shakespeare.py", "--quick", "--manual-dir", str(missing),
                             "--data-dir", str(tmp_path / "tfds")],
                            cwd=ROOT / "pipelines", capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"tiny_shakespeare: the TFDS manual dir {missing} is not a folder" in result.stderr
    assert "Traceback" not in result.stderr
