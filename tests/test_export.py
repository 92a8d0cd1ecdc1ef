"""SavedModel for TensorFlow Serving and TFLite for devices: layout, self-containment and parity."""

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras_textgen as ktg
from keras_textgen import cli, errors, export
from keras_textgen.lite import LiteGenerator
from conftest import LINES, fresh_process_json, train_tiny_model_dir

PROMPTS = ["the cat", "", "€ unknown ☃", "a dog"]
REQUEST = dict(max_length=40, temperature=0.0, top_k=0, top_p=1.0, seed=0)
BLOCK_KERAS = "import sys; sys.modules['keras'] = sys.modules['tf_keras'] = None\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_tiny_model_dir(tmp_path_factory.mktemp("export"), units=24, layers=2, epochs=2,
                                steps_per_epoch=10, seed=3, learning_rate=1e-2)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return ktg.load_model_dir(model_dir, compile=False)


@pytest.fixture(scope="module")
def saved_model(model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    return export.export_saved_model(model_dir, base_dir=base, name="toy")


@pytest.fixture(scope="module")
def served(saved_model):
    """The SavedModel loaded once in this process (`tf.saved_model.load`), for the in-process requests."""
    return tf.saved_model.load(saved_model)


@pytest.fixture(scope="module")
def tflite_files(model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("lite")
    return {q: export.export_tflite(model_dir, base_dir=base, name="toy", quantize=q)
            for q in ("none", "dynamic", "float16")}


def run_python(code):
    return fresh_process_json(BLOCK_KERAS + textwrap.dedent(code))


@pytest.mark.slow
def test_versions_layout_and_no_overwrite(model_dir, tmp_path, monkeypatch):
    first = export.export_saved_model(model_dir, base_dir=tmp_path, name="m")
    assert os.path.exists(os.path.join(first, "variables", "variables.index"))
    # What follows is about version folders, not the SavedModel inside: a stand-in writer saves the traces.
    def stand_in(module, folder, signatures):
        with open(os.path.join(folder, "saved_model.pb"), "wb") as f:
            f.write(b"stand-in")

    monkeypatch.setattr(export.tf.saved_model, "save", stand_in)
    second = export.export_saved_model(model_dir, base_dir=tmp_path, name="m")
    assert first.endswith(os.path.join("m", "1")) and second.endswith(os.path.join("m", "2"))
    assert os.path.exists(os.path.join(second, "saved_model.pb"))
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(errors.ConfigError, match="already exists"):
        export.export_saved_model(model_dir, base_dir=tmp_path, name="m", version=1)
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp
    export.export_saved_model(model_dir, base_dir=tmp_path, name="m", version=1, force=True)
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]  # no temporary folders left
    assert sorted(os.listdir(tmp_path / "m" / "1")) == ["saved_model.pb"]  # version 1 replaced as a whole


@pytest.mark.slow
def test_serving_default_in_a_tensorflow_only_process(saved_model, loaded):
    model, vocab, _ = loaded
    out = run_python(f"""
        import json, tensorflow as tf
        m = tf.saved_model.load({saved_model!r})
        f = m.signatures["serving_default"]
        def call(**kw):
            o = f(prompt=tf.constant({PROMPTS!r}), max_length=tf.constant(kw["max_length"]),
                  temperature=tf.constant(kw["temperature"]), top_k=tf.constant(kw["top_k"]),
                  top_p=tf.constant(kw["top_p"]), seed=tf.constant(kw["seed"], tf.int64))
            return [t.decode() for t in o["text"].numpy()], o["tokens"].shape.as_list(), o["lengths"].numpy().tolist()
        greedy = call(max_length=40, temperature=0.0, top_k=0, top_p=1.0, seed=0)
        sampled = call(max_length=40, temperature=0.9, top_k=5, top_p=0.95, seed=42)
        assert not [k for k in sys.modules if k == "keras" or k.startswith(("keras.", "keras_textgen"))
                    if sys.modules[k] is not None]
        print(json.dumps({{"greedy": greedy, "sampled": sampled}}))
    """.replace("import json, tensorflow", "import json, sys, tensorflow"))
    texts, shape, lengths = out["greedy"]
    assert texts == ktg.generate(model, vocab, PROMPTS, **REQUEST)
    assert shape == [4, 40] and lengths == [len(t) for t in texts]
    sampled = ktg.generate(model, vocab, PROMPTS, max_length=40, temperature=0.9, top_k=5, top_p=0.95, seed=42)
    assert out["sampled"][0] == sampled


@pytest.mark.slow
def test_tf1_loader_as_tensorflow_serving_uses(saved_model, loaded):
    model, vocab, _ = loaded
    out = run_python(f"""
        import json, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], {saved_model!r})
            sig = meta.signature_def["serving_default"]
            feeds = {{sig.inputs["prompt"].name: {PROMPTS!r}, sig.inputs["max_length"].name: 40,
                     sig.inputs["temperature"].name: 0.0, sig.inputs["top_k"].name: 0,
                     sig.inputs["top_p"].name: 1.0, sig.inputs["seed"].name: 0}}
            text = sess.run(sig.outputs["text"].name, feeds)
            only_prompt = sess.run(sig.outputs["lengths"].name, {{sig.inputs["prompt"].name: ["the"]}})
            score = meta.signature_def["score"]
            bits = sess.run(score.outputs["bits_per_char"].name, {{score.inputs["text"].name: ["the cat"]}})
        print(json.dumps({{"text": [t.decode() for t in text], "default_len": int(only_prompt[0]),
                          "bits": float(bits[0])}}))
    """)
    assert out["text"] == ktg.generate(model, vocab, PROMPTS, **REQUEST)
    assert 0 < out["default_len"] <= export.DEFAULT_MAX_LENGTH  # the other inputs have defaults
    assert out["bits"] > 0


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(saved_model):
    cli_path = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli_path, "show", "--dir", saved_model, "--all"], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for name in ("serving_default", "score", "step", "vocabulary"):
        assert f"signature_def['{name}']" in text
    serving = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    for field, dtype in [("prompt", "DT_STRING"), ("max_length", "DT_INT32"), ("temperature", "DT_FLOAT"),
                         ("top_k", "DT_INT32"), ("top_p", "DT_FLOAT"), ("seed", "DT_INT64"), ("text", "DT_STRING"),
                         ("tokens", "DT_INT32"), ("lengths", "DT_INT32")]:
        assert f"['{field}'] tensor_info:\n        dtype: {dtype}" in serving, field


@pytest.mark.slow
def test_step_signature_matches_keras(served, loaded):
    model, vocab, _ = loaded
    sm = served
    step = sm.signatures["step"]
    names = [n for n in step.structured_outputs if n != "logits"]
    states = {n: tf.zeros([1, 24]) for n in names}
    ids = [2] + vocab.encode("the cat").numpy().tolist()
    for i, token in enumerate(ids):
        out = step(tokens=tf.constant([token]), **states)
        states = {n: out[n] for n in names}
    np.testing.assert_allclose(out["logits"].numpy()[0], model(np.array([ids])).numpy()[0, -1], atol=1e-5)
    vocab_out = sm.signatures["vocabulary"]()
    assert [t.decode() for t in vocab_out["tokens"].numpy()] == vocab.get_vocabulary()
    assert int(vocab_out["eos_id"]) == 2


@pytest.mark.parametrize("request_kwargs, message", [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(max_length=0), "max_length"),
    (dict(max_length=10**9), "max_length"),
])
@pytest.mark.slow
def test_bad_requests_get_a_clear_error_and_the_model_keeps_serving(served, request_kwargs, message):
    f = served.signatures["serving_default"]
    request = {**REQUEST, **request_kwargs}
    args = dict(prompt=tf.constant(["the"]), max_length=tf.constant(request["max_length"]),
                temperature=tf.constant(request["temperature"]), top_k=tf.constant(request["top_k"]),
                top_p=tf.constant(request["top_p"]), seed=tf.constant(request["seed"], tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        f(**args)
    ok = f(prompt=tf.constant(["the"]), max_length=tf.constant(5), temperature=tf.constant(0.0),
           top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64))
    assert ok["tokens"].shape == (1, 5)


@pytest.mark.slow
def test_prompt_over_the_limit_is_refused_by_the_server(served):
    from keras_textgen.generation import MAX_PROMPT_TOKENS

    f = served.signatures["serving_default"]
    args = dict(max_length=tf.constant(5), temperature=tf.constant(0.0), top_k=tf.constant(0),
                top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"longer than {MAX_PROMPT_TOKENS} tokens"):
        f(prompt=tf.constant(["a" * (MAX_PROMPT_TOKENS + 1)]), **args)
    assert f(prompt=tf.constant(["a" * MAX_PROMPT_TOKENS]), **args)["tokens"].shape == (1, 5)


@pytest.mark.slow
def test_tflite_has_only_builtin_ops(tflite_files):
    for path in tflite_files.values():
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            tf.lite.experimental.Analyzer.analyze(model_path=path)
        text = report.getvalue()
        assert "FULLY_CONNECTED" in text and "WHILE" in text  # the analyzer saw every subgraph
        assert "Flex" not in text and "TensorList" not in text and "CUSTOM" not in text


@pytest.mark.slow
def test_tflite_logits_match_keras_for_100_steps(tflite_files, loaded):
    model, vocab, _ = loaded
    lite = LiteGenerator(tflite_files["none"])
    gen = ktg.TextGenerator(model, vocab)
    keras_states = gen.initial_state(1)
    lite_states = lite.initial_states(1)
    token = 2
    prefix, lite_rows = [], []
    for i in range(100):
        prefix.append(token)
        keras_logits, keras_states = gen.step(tf.constant([token]), keras_states)
        lite_logits, lite_states = lite.step([token], lite_states)
        np.testing.assert_allclose(lite_logits, keras_logits.numpy(), atol=1e-4)
        lite_rows.append(lite_logits[0])
        masked = keras_logits.numpy()[0]
        masked[:2] = -np.inf
        token = int(masked.argmax())
        if token == 2:
            token = 3
    # And against the Keras model run on the whole text at once: its row i has seen the first i + 1 tokens.
    np.testing.assert_allclose(np.array(lite_rows), model(np.array([prefix])).numpy()[0], atol=1e-4)


@pytest.mark.slow
def test_greedy_text_identical_across_keras_saved_model_and_tflite(tflite_files, served, loaded):
    model, vocab, _ = loaded
    prompts = ["the cat", "a"]
    keras_text = ktg.generate(model, vocab, prompts, max_length=200, temperature=0)
    sm = served.signatures["serving_default"]
    sm_text = [t.decode() for t in sm(prompt=tf.constant(prompts), max_length=tf.constant(200),
                                      temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
                                      seed=tf.constant(0, tf.int64))["text"].numpy()]
    lite_text = LiteGenerator(tflite_files["none"]).generate(prompts, max_length=200, temperature=0)
    assert keras_text == sm_text == lite_text
    lite = LiteGenerator(tflite_files["none"])
    sampled = [lite.generate(prompts, max_length=30, temperature=1.5, top_k=5, seed=s) for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]  # a seed gives the same text, another seed other text


def test_lite_sampler_follows_the_softmax_never_picks_pad_or_oov_and_keeps_top_k():
    from keras_textgen.lite import sample

    logits = np.array([[9.0, 9.0, 0.0, 1.0, 2.0, 0.5]])  # pad and OOV would dominate if not banned
    rng = np.random.default_rng(0)
    draws = sample(np.repeat(logits, 20_000, axis=0), 1.5, 0, rng)
    assert not {0, 1} & set(draws.tolist())
    want = np.exp(logits[0, 2:] / 1.5) / np.exp(logits[0, 2:] / 1.5).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=6)[2:] / draws.size, want, atol=0.015)
    assert set(sample(np.repeat(logits, 2_000, axis=0), 1.0, 2, rng).tolist()) == {3, 4}
    assert sample(logits, 0.0).tolist() == [4]


@pytest.mark.slow
def test_quantized_models_are_smaller_and_close_in_quality(tflite_files, vocab):
    # The converter leaves weights under 1024 elements in float32, which is every per-gate weight of the
    # test's LSTM(16): an LSTM(64) has 64 x 64 recurrent kernels. The benchmark reports the default model's sizes.
    wider = ktg.build_model(vocab, units=64, layers=1, compile=False)
    sizes = {q: len(export.convert_tflite(wider, vocab, quantize=q)[0]) for q in ("none", "dynamic", "float16")}
    assert sizes["dynamic"] < sizes["float16"] < sizes["none"]
    text = "\n".join(LINES[:4])
    bits = {q: LiteGenerator(p).bits_per_token(text) for q, p in tflite_files.items()}
    assert abs(bits["dynamic"] - bits["none"]) < 0.05
    assert abs(bits["float16"] - bits["none"]) < 0.01


@pytest.mark.slow
def test_tflite_carries_its_vocabulary(tflite_files, loaded):
    _, vocab, _ = loaded
    lite = LiteGenerator(tflite_files["dynamic"])
    assert lite.tokens == vocab.get_vocabulary()
    side_file = tflite_files["none"].replace(".tflite", ".vocab.json")
    assert json.load(open(side_file))["tokens"] == vocab.tokens
    assert lite.encode("cat€") == vocab.encode("cat€").numpy().tolist()


@pytest.mark.slow
def test_truncated_tflite_is_a_clear_error(tflite_files, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(open(tflite_files["none"], "rb").read()[:1000])
    with pytest.raises(errors.ArtifactError, match="broken.tflite"):
        LiteGenerator(broken)


@pytest.mark.slow
def test_cli_export_and_bad_inputs(model_dir, tmp_path, capsys):
    base = str(tmp_path / "out")
    assert cli.main(["export", "--model", str(model_dir), "--format", "saved_model", "--base-dir", base,
                     "--name", "n"]) == 0
    assert cli.main(["export", "--model", str(model_dir), "--format", "tflite", "--base-dir", base, "--name", "n",
                     "--quantize", "dynamic"]) == 0
    assert sorted(os.listdir(base)) == ["n", "n.int8.tflite", "n.vocab.json"]
    capsys.readouterr()
    assert cli.main(["export", "--model", str(model_dir), "--format", "saved_model", "--base-dir", base,
                     "--name", "n", "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(tmp_path / "nope"), "--format", "tflite", "--base-dir", base]) == 2
    assert "model directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["export", "--model", str(tmp_path / "empty"), "--format", "saved_model",
                     "--base-dir", base]) == 2
    assert "not a keras_textgen model directory" in capsys.readouterr().err
    assert sorted(os.listdir(os.path.join(base, "n"))) == ["1"]


@pytest.mark.slow
def test_unwritable_output_folder(model_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for fmt in ("tflite", "saved_model"):
        code = cli.main(["export", "--model", str(model_dir), "--format", fmt, "--base-dir", str(blocker / "sub")])
        assert code == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"
    if os.geteuid() != 0:  # root may write anywhere, so only check permissions as a normal user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli.main(["export", "--model", str(model_dir), "--format", "tflite", "--base-dir", str(locked)]) == 2
        assert "permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("level, cell, embedding_dim, layers", [
    ("char", "gru", None, 1), ("char", "lstm", 6, 2), ("char", "gru", 5, 2), ("word", "lstm", None, 1)],
    ids=["one-hot gru", "embedding lstm x2", "embedding gru x2", "word-level lstm"])
@pytest.mark.slow
def test_every_model_kind_exports_with_the_same_greedy_text(tmp_path, level, cell, embedding_dim, layers):
    """GRU, embedding and word-level models (GRU state names, Keras-cell steps, word tokenizing in the
    TFLite client) give the Keras text from the SavedModel and from TFLite, and TFLite logits match."""
    lines = ["The cat sat on the mat.", "a dog ran, in the park!", "the end of the line"] * 4
    vocab = ktg.Vocabulary.adapt(lines, level=level)
    model = ktg.build_model(vocab, units=12, layers=layers, cell=cell, embedding_dim=embedding_dim, compile=False)
    rng = np.random.default_rng(2)  # a seed whose weights give varied text for all four kinds
    for weight in model.weights:  # large random weights: greedy text that depends on every weight
        weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.8)
    saved = export.export_saved_model(model, vocab, base_dir=tmp_path, name="kind")
    lite_path = export.export_tflite(model, vocab, base_dir=tmp_path, name="kind")
    prompts = ["The cat, sat", "a", ""]
    keras_text = ktg.generate(model, vocab, prompts, max_length=20, temperature=0)
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    sm_text = [t.decode() for t in serve(prompt=tf.constant(prompts), max_length=tf.constant(20),
                                         temperature=tf.constant(0.0), top_k=tf.constant(0),
                                         top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64))["text"].numpy()]
    lite = LiteGenerator(lite_path)
    assert keras_text == sm_text == lite.generate(prompts, max_length=20, temperature=0)
    assert len(set(keras_text)) > 1 and len(set("".join(keras_text))) > 1  # not one repeated token
    if level == "word":  # prompt + continuation reads as words with a space between them
        for prompt, text in zip(prompts, keras_text):
            first = text.lstrip()[:1]
            assert text.startswith(" ") == bool(prompt and text and (first.isalnum() or first == "_")), (prompt, text)
    ids = [2] + vocab.encode(prompts[0]).numpy().tolist()
    assert lite.encode(prompts[0]) == ids[1:]  # the TFLite client tokenizes like the vocabulary
    states = lite.initial_states(1)
    keras_logits = model(np.array([ids])).numpy()[0]  # row i: the logits after ids[: i + 1] (a causal model)
    for i in range(len(ids)):
        logits, states = lite.step([ids[i]], states)
        np.testing.assert_allclose(logits[0], keras_logits[i], atol=1e-4)
