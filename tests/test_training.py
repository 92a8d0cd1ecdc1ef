"""`keras_textgen.train`'s steps per `tf.function` call: faster, with the same steps as one at a time."""

import json
import os

import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import artifacts, backup, errors, preparation, steps, training
from conftest import LINES, train_tiny_model_dir, write_lines_corpus


@pytest.mark.parametrize("epoch_steps, validation_steps, expected", [
    (150, None, 6), (40, None, 8), (32, None, 8), (20, None, 5), (7, None, 7), (11, None, 1), (None, None, 1),
    (-2, None, 1), (150, 4, 2), (40, 1, 1), (12, 3, 3), (None, 4, 1),
])
def test_steps_per_execution_divides_the_epoch_and_the_validation(epoch_steps, validation_steps, expected):
    assert steps.steps_per_execution_for(epoch_steps, validation_steps) == expected


def test_steps_per_execution_that_does_not_divide_the_validation_steps_is_refused():
    with pytest.raises(errors.ConfigError, match=r"must divide validation_steps \(3\), got 2"):
        training.TrainConfig(steps_per_execution=2, validation_steps=3).validate()


@pytest.mark.slow
def test_several_steps_per_execution_train_exactly_as_one_at_a_time(tmp_path):
    runs = {}
    for name, steps_per_execution in (("auto", None), ("one", 1)):
        (tmp_path / name).mkdir()
        model_dir = train_tiny_model_dir(tmp_path / name, units=8, layers=1, epochs=2, steps_per_epoch=12,
                                         validation_steps=3, backup_every=5, steps_per_execution=steps_per_execution)
        runs[name] = (*ktg.load_model_dir(model_dir), json.load(open(model_dir / artifacts.HISTORY_FILE)))
    (auto, _, auto_config, auto_history), (one, _, one_config, one_history) = runs["auto"], runs["one"]
    # 3 divides the 12 training and the 3 validation steps (6 would validate on 6 batches, not 3).
    assert auto_config["steps_per_execution_in_force"] == 3 and one_config["steps_per_execution_in_force"] == 1
    assert int(auto.optimizer.iterations) == int(one.optimizer.iterations) == 24  # no step more, none fewer
    for got, want in zip(auto.get_weights(), one.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(auto_history[key], one_history[key], rtol=1e-5, err_msg=key)
    assert auto.steps_per_execution == 1  # the saved model is compiled as build_model compiles it


@pytest.mark.slow
def test_steps_per_execution_that_does_not_divide_one_pass_fails_before_writing(tmp_path):
    corpus = write_lines_corpus(tmp_path)
    config = training.TrainConfig(corpus=str(corpus), batch_size=8, epochs=1, units=8, seed=0, steps_per_execution=7)
    passes = sum(1 for _ in preparation.prepare(config)[2])
    assert passes % 7, "the fixture must give a pass that 7 does not divide"
    with pytest.raises(errors.ConfigError, match=rf"must divide the steps of one pass over the training data "
                                                 rf"\({passes}\), got 7"):
        training.train(config, tmp_path / "model", print_fn=lambda *_: None, verbose=0)
    assert not os.path.exists(tmp_path / "model")


@pytest.mark.parametrize("mode", ["lines", "chunks"])
def test_the_loss_is_scaled_by_the_mean_real_targets_of_a_training_sequence(tmp_path, mode):
    """`TokenCrossentropy`'s count per sequence: a line of n characters has n + 1 targets, a window seq_len."""
    corpus = write_lines_corpus(tmp_path)
    config = training.TrainConfig(corpus=str(corpus), mode=mode, batch_size=4, seq_len=10, units=8, seed=0)
    prepared = preparation.prepare(config)
    real = [int(np.sum(y.numpy() != 0)) for _, y in prepared.train_ds]
    if mode == "lines":
        train_lines = sum(1 for _ in prepared.corpus.train)
        assert sum(real) == sum(len(t.decode()) + 1 for t in prepared.corpus.train.as_numpy_iterator())
        assert prepared.targets_per_sequence == pytest.approx(sum(real) / train_lines)
        assert len(set(real)) > 1, "the fixture's batches must differ in targets"
        assert train_lines < len(LINES * 4)  # every 10th line is held out
    else:
        assert prepared.targets_per_sequence == 10 and max(real) == 4 * 10


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_a_run_resumed_between_two_calls_still_runs_whole_calls(tmp_path):
    """A backup taken one step at a time (step 10 of 12) resumes with a count that divides 10 and 12."""
    corpus = write_lines_corpus(tmp_path)
    settings = dict(corpus=str(corpus), batch_size=8, epochs=2, steps_per_epoch=12, units=8, seed=0, backup_every=5,
                    sample_prompts=("a",), sample_length=2, keep_generator=False)

    def stop_at_the_first_sample(line):
        if line.startswith("[sample"):
            raise _Stop  # after epoch 1's last step; its end-of-epoch backup waits for epoch 2 to begin

    with pytest.raises(_Stop):
        training.train(training.TrainConfig(**settings, steps_per_execution=1), tmp_path / "resumed",
                       print_fn=stop_at_the_first_sample, verbose=0)
    state = backup.read_state(tmp_path / "resumed" / artifacts.BACKUP_DIR)
    assert (state["epoch"], state["step"]) == (0, 10)
    quiet = {**settings, "sample_prompts": ()}  # the samples only marked the stop above; they change no weight
    training.train(training.TrainConfig(**quiet), tmp_path / "resumed", print_fn=lambda *_: None, verbose=0)
    training.train(training.TrainConfig(**quiet, steps_per_execution=1), tmp_path / "reference",
                   print_fn=lambda *_: None, verbose=0)
    resumed, _, config = ktg.load_model_dir(tmp_path / "resumed")
    reference = ktg.load_model_dir(tmp_path / "reference")[0]
    assert config["steps_per_execution_in_force"] == 2  # 6 would run 12 steps from step 10: 4 too many
    assert int(resumed.optimizer.iterations) == int(reference.optimizer.iterations) == 24
    for got, want in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_sampler_without_prompts_is_refused_before_training(vocab):
    with pytest.raises(errors.ConfigError, match="SampleCallback needs at least one prompt"):
        ktg.SampleCallback(vocab, prompts=())


def test_the_history_plot_leaves_the_callers_matplotlib_alone(tmp_path):
    """A notebook's backend and its open figures stay as they were: the plot is a `Figure` of its own."""
    import matplotlib
    import matplotlib.pyplot as plt

    from keras_textgen import history as history_lib

    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # not the Agg the plot renders with, so a switch would show
    try:
        fig = plt.figure()
        history_lib.plot_history({"epoch": [1, 2], "loss": [2.0, 1.5], "val_loss": [2.1, 1.8]}, tmp_path / "h.png")
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == [fig.number]
        plt.close(fig)
    finally:
        plt.switch_backend(before)
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
