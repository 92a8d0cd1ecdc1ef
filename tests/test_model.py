import keras
import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import errors


def padded(ids, length):
    out = np.zeros((1, length), np.int32)
    out[0, :len(ids)] = ids
    return out


def test_padding_is_really_masked(vocab, tiny_model):
    """Loss and real-position outputs are the same padded to 20 or to 200 steps."""
    x = [2] + vocab.encode("the cat").numpy().tolist()
    y = x[1:] + [2]
    n = len(x)
    out20 = tiny_model(padded(x, 20)).numpy()[0, :n]
    out200 = tiny_model(padded(x, 200)).numpy()[0, :n]
    np.testing.assert_allclose(out20, out200, atol=1e-5)
    loss20 = tiny_model.evaluate(padded(x, 20), padded(y, 20), verbose=0)[0]
    loss200 = tiny_model.evaluate(padded(x, 200), padded(y, 200), verbose=0)[0]
    loss_unpadded = tiny_model.evaluate(np.array([x]), np.array([y]), verbose=0)[0]
    assert loss20 == pytest.approx(loss_unpadded, abs=1e-5)
    assert loss200 == pytest.approx(loss_unpadded, abs=1e-5)


def test_lesson_style_one_hot_would_not_mask(vocab):
    """The lesson's bug, reproduced: a one-hot pad vector is not masked, so padding changes the loss."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Lambda(lambda t: keras.ops.one_hot(t, vocab.size)),  # pad -> [1, 0, ...]
        keras.layers.Masking(0.0),
        keras.layers.LSTM(8, return_sequences=True),
        keras.layers.Dense(vocab.size)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = [2, 5, 6, 7]
    y = [5, 6, 7, 2]
    assert model.evaluate(padded(x, 20), padded(y, 20), verbose=0) != pytest.approx(
        model.evaluate(np.array([x]), np.array([y]), verbose=0), abs=1e-4)


def test_embedding_variant_masks_too(vocab):
    model = ktg.build_model(vocab, units=8, layers=1, embedding_dim=4, cell="gru")
    x = [2, 5, 6, 7]
    np.testing.assert_allclose(model(padded(x, 6)).numpy()[0, :4], model(padded(x, 60)).numpy()[0, :4], atol=1e-5)


def test_architecture(vocab):
    model = ktg.build_model(vocab, units=8, layers=3, dropout=0.1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["TokenEncoding", "Masking", "PerGateLSTM", "Dropout", "PerGateLSTM", "Dropout", "PerGateLSTM",
                     "Dropout", "Dense"]
    assert all(isinstance(layer, keras.layers.LSTM) for layer in model.layers if "LSTM" in type(layer).__name__)
    assert isinstance(model, keras.Sequential)
    assert model.output_shape == (None, None, vocab.size)


def test_training_lowers_the_loss_and_traces_its_step_once(vocab, lines):
    keras.utils.set_random_seed(0)
    model = ktg.build_model(vocab, units=32, layers=1, learning_rate=1e-2)
    traces, train_step = [], model.train_step

    def counted(data):  # runs once per trace of Keras's train function
        traces.append(data)
        return train_step(data)

    model.train_step = counted
    ds = ktg.make_dataset(lines, vocab, batch_size=4, seed=0)
    history = model.fit(ds, epochs=20, verbose=0).history["loss"]
    assert history[-1] < history[0] * 0.8
    # The optimizer is built with the model: Keras (no strategy) would otherwise build it inside the first
    # trace, and TensorFlow traces a function that created variables a second time (tensorflow#48851).
    assert len(traces) == 1


def test_saved_and_loaded_model_gives_same_outputs(tmp_path, vocab, tiny_model):
    path = tmp_path / "m.keras"
    tiny_model.save(path)
    loaded = keras.saving.load_model(path)
    x = padded([2, 5, 6], 5)
    np.testing.assert_allclose(loaded(x).numpy(), tiny_model(x).numpy(), atol=1e-6)


def test_recurrent_dropout_reaches_every_recurrent_layer_and_only_training(vocab):
    model = ktg.build_model(vocab, units=8, layers=2, recurrent_dropout=0.3)
    assert [layer.cell.recurrent_dropout for layer in model.layers if isinstance(layer, keras.layers.LSTM)] == [0.3] * 2
    x = padded([2, 5, 6, 7], 6)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False), atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"units": 0}, {"layers": 0}, {"cell": "rnn"}, {"dropout": 1.0},
                                    {"recurrent_dropout": 1.0}, {"recurrent_dropout": -0.1}])
def test_bad_model_options(vocab, kwargs):
    with pytest.raises(errors.ConfigError):
        ktg.build_model(vocab, **kwargs)


def test_per_token_loss_weights_every_real_target_alike_and_traces_once(vocab, lines, tiny_model):
    """The loss summed over real targets / their count, from the model's own logits; one trace per model."""
    from keras_textgen import model as model_lib

    ds = ktg.make_dataset(lines, vocab, batch_size=3, shuffle=False)
    total = count = 0.0
    for x, y in ds:
        logits = tiny_model(x).numpy().astype(np.float64)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        y = y.numpy()
        real = y != 0
        total -= np.take_along_axis(logp, y[..., None], -1)[..., 0][real].sum()
        count += real.sum()
    nats, tokens = model_lib.per_token_loss(tiny_model, ds)
    assert tokens == count == sum(len(line) + 1 for line in lines)
    assert nats == pytest.approx(total / count, rel=1e-5)
    assert model_lib.bits(nats) == pytest.approx(nats / np.log(2))
    model_lib.per_token_loss(tiny_model, ds.take(1))  # scored again, a training curve's next point
    assert model_lib._loss_sums[tiny_model].experimental_get_tracing_count() == 1


def _target_losses(model, x, y):
    """Each position's next-token loss in nats from the model's logits (float64), and the real-target mask."""
    logits = model(x).numpy().astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, y[..., None], -1)[..., 0], y != 0


def test_token_crossentropy_weighs_every_real_target_alike_across_batches(vocab, tiny_model):
    """Two batches of two lines, short and long: with `targets_per_sequence` their mean, the logged loss
    (Keras's mean over batches) is the loss per token; Keras's default loss weighs the short batch's targets up.
    A last, partial batch of one line counts by its sequences too."""
    from keras_textgen import losses

    short = ktg.make_dataset(["a", "the"], vocab, batch_size=2, shuffle=False)
    long = ktg.make_dataset(["the cat sat on the mat", "birds sang in the morning"], vocab, batch_size=2,
                            shuffle=False)
    batches = [next(iter(short)), next(iter(long))]
    sums, counts = [], []
    for x, y in batches:
        losses_, real = _target_losses(tiny_model, x.numpy(), y.numpy())
        sums.append(losses_[real].sum())
        counts.append(real.sum())
    assert counts[1] > 5 * counts[0]
    per_token = sum(sums) / sum(counts)
    ds = short.concatenate(long)
    model = ktg.build_model(vocab, units=16, layers=2, targets_per_sequence=sum(counts) / 4)
    model.set_weights(tiny_model.get_weights())
    assert isinstance(model.loss, losses.TokenCrossentropy)
    assert model.evaluate(ds, verbose=0)[0] == pytest.approx(per_token, rel=1e-5)
    for (x, y), total in zip(batches, sums):  # each batch: its real targets' sum over 2 x the fixed count
        assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(total / (2 * sum(counts) / 4), rel=1e-5)
    x, y = batches[1]
    partial = model.evaluate(x[:1], y[:1], verbose=0)[0]  # one sequence: its sum over 1 x the count
    one, real = _target_losses(tiny_model, x[:1].numpy(), y[:1].numpy())
    assert partial == pytest.approx(one[real].sum() / (sum(counts) / 4), rel=1e-5)
    mean_of_means = (sums[0] / counts[0] + sums[1] / counts[1]) / 2
    assert tiny_model.evaluate(ds, verbose=0)[0] == pytest.approx(mean_of_means, rel=1e-5)
    assert abs(mean_of_means - per_token) > 0.02  # the two weightings differ on these batches


def test_token_crossentropy_round_trips_and_refuses_a_bad_scale(tmp_path, vocab):
    from keras_textgen import losses

    model = ktg.build_model(vocab, units=8, targets_per_sequence=123.5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, losses.TokenCrossentropy) and loaded.loss.targets_per_sequence == 123.5
    assert isinstance(losses.next_token_loss(None), keras.losses.SparseCategoricalCrossentropy)
    counts = ktg.vocab.count(["ab", "abcd"])  # lines of 3 and 5 targets, their ends included
    assert losses.targets_per_sequence(counts) == 4.0
    assert losses.targets_per_sequence(counts, max_line_length=3) == 3
    assert losses.targets_per_sequence(counts, mode="chunks", seq_len=50) == 50.0
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="targets_per_sequence"):
            losses.TokenCrossentropy(bad)
