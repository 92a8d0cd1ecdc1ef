"""The traced generation loop `train` keeps in the model directory (keras_textgen.generator_cache)."""

import json
import os

import pytest

from conftest import train_tiny_model_dir, write_lines_corpus

pytestmark = pytest.mark.slow  # tiny trainings

REQUESTS = [dict(temperature=0.0, top_k=0, top_p=1.0, seed=0),
            dict(temperature=0.9, top_k=5, top_p=0.9, seed=11)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_tiny_model_dir(tmp_path_factory.mktemp("cache"), units=16, layers=2, epochs=2,
                                keep_generator=True)


def test_train_keeps_a_generator_that_writes_the_text_keras_writes(model_dir):
    import keras_textgen as ktg
    from keras_textgen import generation, generator_cache

    assert os.path.isfile(model_dir / "generator" / "saved_model.pb")
    generate_fn = generator_cache.load(model_dir)
    assert generate_fn is not None
    model, vocab = ktg.load(model_dir, compile=False)
    prompts = ["the ", "a dog", ""]
    for request in REQUESTS:
        expected = ktg.generate(model, vocab, prompts, max_length=30, **request)
        assert generation.run_generate_fn(generate_fn, prompts, 30, **request) == expected


def test_cli_generate_uses_the_kept_generator_without_loading_the_keras_model(model_dir, monkeypatch, capsys):
    import keras_textgen as ktg
    from keras_textgen import artifacts, cli

    model, vocab = ktg.load(model_dir, compile=False)
    expected = ktg.generate(model, vocab, "the ", max_length=25, temperature=0.0)

    def refuse(*args, **kwargs):
        raise AssertionError("generate loaded model.keras although generator/ is current")

    monkeypatch.setattr(artifacts, "load_model_dir", refuse)
    assert cli.main(["generate", "--model", str(model_dir), "--prompt", "the ", "--max-length", "25",
                     "--temperature", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [expected]
    # A bad request is still the one-line error, on this path too.
    assert cli.main(["generate", "--model", str(model_dir), "--prompt", "x", "--max-length", "0"]) == 2
    assert "max_length must be" in capsys.readouterr().err


def test_a_generator_older_than_its_model_is_not_used(model_dir, tmp_path, capsys):
    import shutil

    import keras_textgen as ktg
    from keras_textgen import artifacts, cli, generator_cache

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    model, vocab = ktg.load(copy, compile=False)
    model.set_weights([w * 0.5 for w in model.get_weights()])  # another model under the same name
    artifacts.save_model(model, copy)
    assert generator_cache.load(copy) is None
    expected = ktg.generate(model, vocab, "the ", max_length=25, temperature=0.0)
    assert cli.main(["generate", "--model", str(copy), "--prompt", "the ", "--max-length", "25",
                     "--temperature", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [expected]
    # A damaged generator folder is ignored the same way.
    generator_cache.save(copy)
    assert generator_cache.load(copy) is not None
    (copy / "generator" / "saved_model.pb").write_bytes(b"not a graph")
    assert generator_cache.load(copy) is None


def test_train_no_generator_keeps_none_and_drops_an_earlier_one(model_dir, tmp_path, capsys):
    """`--no-generator` (`keep_generator=False`): no traced loop is saved, a --force run's old one goes."""
    import shutil

    import keras_textgen as ktg
    from keras_textgen import cli, generator_cache

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    corpus = write_lines_corpus(tmp_path)
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(copy), "--force", "--no-generator",
                     "--no-samples", "--units", "8", "--epochs", "1", "--steps-per-epoch", "2", "--seed", "0",
                     "--time-budget", "none"]) == 0
    assert not (copy / "generator").exists() and generator_cache.load(copy) is None
    assert json.loads((copy / "config.json").read_text())["keep_generator"] is False
    model, vocab = ktg.load(copy, compile=False)
    expected = ktg.generate(model, vocab, "the ", max_length=20, temperature=0.0)
    capsys.readouterr()
    assert cli.main(["generate", "--model", str(copy), "--prompt", "the ", "--max-length", "20",
                     "--temperature", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [expected]  # traced from model.keras instead
