"""Saved models load the Keras way in a fresh process: `import keras_textgen` registers the custom objects."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_textgen as ktg
from conftest import LINES, ROOT


def _python(code, *args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd)


# Loads sys.argv[1] with plain Keras and prints its layers and its logits on sys.argv[2] (a .npy of ids).
LOAD = """
import json, sys
import numpy as np
{imports}
model = keras.saving.load_model(sys.argv[1])
print(json.dumps({{"layers": [type(l).__name__ for l in model.layers], "loss": type(model.loss).__name__,
                   "logits": model(np.load(sys.argv[2])).numpy().tolist()}}))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model of build_model (TokenEncoding + PerGateLSTM, TokenCrossentropy) saved with model.save, and its logits."""
    folder = tmp_path_factory.mktemp("keras_load")
    vocab = ktg.Vocabulary.adapt(LINES)
    model = ktg.build_model(vocab, units=8, layers=1, targets_per_sequence=100.0)
    ids = np.array([[2, 5, 7, 3, 0]], "int32")
    model.save(folder / "model.keras")
    np.save(folder / "ids.npy", ids)
    return folder, model(ids).numpy()


@pytest.mark.parametrize("imports", ["import keras_textgen\nimport keras", "import keras\nimport keras_textgen",
                                     "import tensorflow\nimport keras_textgen\nimport keras"])
def test_keras_load_model_in_a_fresh_process(saved, imports):
    folder, logits = saved
    result = _python(LOAD.format(imports=imports), str(folder / "model.keras"), str(folder / "ids.npy"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"TokenEncoding", "PerGateLSTM"} <= set(out["layers"]) and out["loss"] == "TokenCrossentropy"
    np.testing.assert_allclose(np.array(out["logits"]), logits, rtol=1e-5, atol=1e-6)


def test_without_keras_textgen_the_load_fails(saved):
    """The control: the custom objects really are needed, so the test above can fail."""
    folder, _ = saved
    result = _python(LOAD.format(imports="import keras"), str(folder / "model.keras"), str(folder / "ids.npy"))
    assert result.returncode != 0
    assert "TokenEncoding" in result.stderr or "could not be deserialized" in result.stderr


def test_import_keras_textgen_alone_stays_light():
    result = _python("""
        import sys, keras_textgen
        print(sorted(m for m in ("tensorflow", "keras", "numpy") if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# A pipelines/-style script: build, model.fit, model.save + vocab.save.
FIT_SCRIPT = """
import sys
import keras
import numpy as np
import keras_textgen as ktg

lines = {lines!r}
keras.utils.set_random_seed(1)
vocab = ktg.Vocabulary.adapt(lines, level="word")
ds = ktg.make_dataset(lines, vocab, batch_size=4, seed=1)
model = ktg.build_model(vocab, units=8, layers=1, embedding_dim=4)
model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
model.save(sys.argv[1] + "/model.keras")
vocab.save(sys.argv[1] + "/vocab.json")
ids = vocab.encode(["the cat sat"]).to_tensor()
np.save(sys.argv[1] + "/ids.npy", ids.numpy())
np.save(sys.argv[1] + "/logits.npy", model(ids).numpy())
print(repr(ktg.generate(model, vocab, ["the"], max_length=6, temperature=0.0)[0]))
"""


@pytest.mark.slow  # trains with model.fit in a child process
def test_a_model_fit_script_s_model_loads_with_keras_textgen_load(tmp_path):
    fit = _python(FIT_SCRIPT.format(lines=LINES), str(tmp_path))
    assert fit.returncode == 0, fit.stderr[-2000:]
    greedy = fit.stdout.strip().splitlines()[-1]
    load = _python("""
        import sys
        import keras
        import keras_textgen as ktg
        import numpy as np
        ids, logits = np.load(sys.argv[1] + "/ids.npy"), np.load(sys.argv[1] + "/logits.npy")
        # The Keras way first, in a process that has loaded nothing of the model yet; then ktg.load.
        plain = keras.saving.load_model(sys.argv[1] + "/model.keras")
        np.testing.assert_allclose(plain(ids).numpy(), logits, rtol=1e-5, atol=1e-6)
        model, vocab = ktg.load(sys.argv[1])
        np.testing.assert_allclose(model(ids).numpy(), logits, rtol=1e-5, atol=1e-6)
        print(type(plain.layers[0]).__name__, type(model.layers[0]).__name__, vocab.level)
        print(repr(ktg.generate(model, vocab, ["the"], max_length=6, temperature=0.0)[0]))
    """, str(tmp_path))
    assert load.returncode == 0, load.stderr[-2000:]
    kinds, again = load.stdout.strip().splitlines()[-2:]
    assert kinds == "TokenEncoding TokenEncoding word"
    assert again == greedy  # the same weights: the same greedy continuation


def test_load_of_a_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(ktg.errors.ArtifactError, match="model directory not found"):
        ktg.load(tmp_path / "missing")
