"""The on-device client `keras_textgen.lite` runs where TensorFlow cannot even be imported."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import keras_textgen as ktg
from keras_textgen import errors, export
from conftest import LINES, ROOT

# Makes `import tensorflow` (and Keras, which needs it) fail, as on a device without them,
# then generates greedily from sys.argv[1] and prints what was imported.
NO_TENSORFLOW = """
import importlib.abc, json, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocker())
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")

from keras_textgen.lite import LiteGenerator

gen = LiteGenerator(sys.argv[1])
texts = gen.generate(json.loads(sys.argv[2]), max_length=30, temperature=0)
print(json.dumps({"texts": texts, "loaded": sorted(m for m in ("tensorflow", "keras") if sys.modules.get(m))}))
"""


def _python(code, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    """A .tflite of a tiny trained model, and the greedy continuations Keras gives."""
    import keras

    keras.utils.set_random_seed(3)
    vocab = ktg.Vocabulary.adapt(LINES)
    model = ktg.build_model(vocab, units=16, layers=1)
    model.fit(ktg.make_dataset(LINES * 4, vocab, batch_size=8, seed=3), epochs=2, verbose=0)
    prompts = ["the ", "a dog", "zz"]
    expected = ktg.generate(model, vocab, prompts, max_length=30, temperature=0)
    path = export.export_tflite(model, vocab, base_dir=tmp_path_factory.mktemp("lite"), name="tiny")
    return path, prompts, expected


def test_lite_generates_in_a_process_where_tensorflow_cannot_be_imported(tflite):
    path, prompts, expected = tflite
    result = _python(NO_TENSORFLOW, path, json.dumps(prompts))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["texts"] == expected  # greedy: the same text as Keras
    assert any(out["texts"])  # and not all empty, so the comparison means something


def test_the_blocker_would_catch_a_tensorflow_import(tflite):
    """The control: importing something that needs TensorFlow fails under the same blocker."""
    path, prompts, _ = tflite
    result = _python(NO_TENSORFLOW.replace("from keras_textgen.lite import LiteGenerator",
                                           "from keras_textgen.lite import LiteGenerator\nimport keras_textgen.vocab"),
                     path, json.dumps(prompts))
    assert result.returncode != 0 and "blocked in this test" in result.stderr


def test_a_missing_tflite_says_not_found(tmp_path):
    from keras_textgen.lite import LiteGenerator

    with pytest.raises(errors.ArtifactError, match=r"^TFLite model not found: .*missing\.tflite$"):
        LiteGenerator(tmp_path / "missing.tflite")
    with pytest.raises(errors.ArtifactError, match="is a directory"):
        LiteGenerator(tmp_path)
