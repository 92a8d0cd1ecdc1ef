"""Load: the exported SavedModel's serving_default from 8 threads at once.

Figures are printed (visible with `pytest -s`) and written to
`$TMPDIR/keras_textgen_load.json`. `tests/load_saved_model.py` is the same
load test as a script, for bigger runs.
"""

import json
import os
import tempfile

import pytest
import tensorflow as tf

from keras_textgen import export
from conftest import train_tiny_model_dir
from load_saved_model import make_requests, run_load, summary

pytestmark = pytest.mark.slow  # exports a model and serves 1,600 requests; `make test-fast` leaves them out

THREADS, PER_THREAD = 8, 200


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    model_dir = train_tiny_model_dir(folder, units=16, layers=1, validation_steps=1, seed=4)
    path = export.export_saved_model(model_dir, base_dir=folder / "saved_models", name="toy")
    loaded = tf.saved_model.load(path)
    tokens = [t.decode() for t in loaded.signatures["vocabulary"]()["tokens"].numpy()]
    return loaded, loaded.signatures["serving_default"], tokens


def test_eight_threads_get_the_single_threaded_answers_and_memory_stays_flat(serving):
    _, serve, tokens = serving
    requests = make_requests(tokens, 64, max_length=(5, 20))
    assert sum(r["bad"] for r in requests) >= 1
    report = run_load(serve, requests, threads=THREADS, per_thread=PER_THREAD)
    line = summary(report)
    print("\n" + line)
    with open(os.path.join(tempfile.gettempdir(), "keras_textgen_load.json"), "w") as f:
        json.dump({k: v for k, v in report.items() if k not in ("mismatches", "errors")}, f, indent=1)
    assert report["requests"] == THREADS * PER_THREAD
    assert not report["errors"], report["errors"][:3]  # no request failed that should not
    assert not report["mismatches"], report["mismatches"][:3]  # every answer is the single-threaded one
    assert report["bad_requests_rejected"] > 0  # bad requests were refused, and the rest kept working
    # Flat memory: a leak of even 20 KiB per request would add 31 MiB over the 1600 requests.
    assert report["rss_growth_mb"] < 25, line


def test_the_comparison_can_fail(serving):
    """A different seed changes a sampled answer: the equality above is not vacuous."""
    _, serve, tokens = serving
    request = make_requests(tokens, 1, bad_every=0)[0]
    request.update(temperature=1.0, top_k=0, top_p=1.0, max_length=20, prompt=["the"])
    from load_saved_model import call

    answers = {tuple(call(serve, {**request, "seed": s})[1]) for s in range(5)}
    assert len(answers) > 1
