"""The suite's own set-up (tests/conftest.py): the reliability seed and the order test files run in."""

import os
import subprocess
import sys

import pytest

from conftest import FIXED_RELIABILITY_SEED, ROOT


def collect(files, **env):
    """`pytest --collect-only files` in a child, with `env` set and no seed inherited from this session."""
    child_env = {k: v for k, v in os.environ.items() if k != "RELIABILITY_SEED"}
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-p", "no:xdist", "-p", "no:cacheprovider",
                          *files], cwd=ROOT, capture_output=True, text=True, env={**child_env, **env}, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow  # a pytest of its own
def test_ci_fixes_the_reliability_seed_and_the_longest_files_are_collected_first():
    out = collect(["tests/test_vocab.py", "tests/test_sources.py", "tests/test_docs.py"], CI="1")
    assert f"reliability seed: {FIXED_RELIABILITY_SEED} " in out
    modules = [line.strip() for line in out.splitlines() if line.strip().startswith("<Module ")]
    # test_sources.py is one of conftest.LONGEST_FIRST: it moves to the front; the others keep their order.
    assert modules == ["<Module test_sources.py>", "<Module test_vocab.py>", "<Module test_docs.py>"]
    assert "reliability seed: 77 " in collect(["tests/test_docs.py"], CI="1", RELIABILITY_SEED="77")
