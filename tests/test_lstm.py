"""PerGateLSTM is keras.layers.LSTM with another CPU time loop: same outputs, same gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_textgen as ktg
from keras_textgen.lstm import PerGateLSTM


def pair(units=6, **kwargs):
    """A PerGateLSTM and a keras.layers.LSTM with the same (random) weights."""
    kwargs = {"return_sequences": True, **kwargs}
    ours = PerGateLSTM(units, **kwargs)
    theirs = keras.layers.LSTM(units, **kwargs)
    for layer in (ours, theirs):
        layer.build((None, None, 5))
    rng = np.random.default_rng(0)
    for a, b in zip(ours.weights, theirs.weights):
        value = rng.normal(size=a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    return ours, theirs


def masked_inputs():
    """3 rows of 7 steps, with right padding (zero vectors) in two rows."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    x[0, 4:] = 0.0
    x[2, 1:] = 0.0
    return x


def outputs_and_gradients(layers, x, mask):
    """Each layer's `(outputs, weight gradients)` for the same random weighting of its `[3, 7, 6]` outputs."""
    seeds = np.random.default_rng(2).normal(size=(3, 7, 6)).astype("float32")
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            y = layer(x, mask=mask, training=True)
            loss = tf.reduce_sum(y * seeds)
        grads = tape.gradient(loss, layer.trainable_weights)
        results.append((y.numpy(), [tf.convert_to_tensor(g).numpy() for g in grads]))
    return results


@pytest.mark.parametrize("kwargs", [{}, {"use_bias": False}, {"activation": "relu", "recurrent_activation": "hard_sigmoid"}])
def test_same_outputs_and_gradients_as_keras_lstm_with_masking(kwargs):
    ours, theirs = pair(**kwargs)
    x = masked_inputs()
    mask = tf.reduce_any(x != 0.0, axis=-1)
    (y_ours, g_ours), (y_theirs, g_theirs) = outputs_and_gradients((ours, theirs), x, mask)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    assert np.abs(y_ours[2, 0]).sum() > 0  # a real step, not an all-masked trivial case
    for a, b in zip(g_ours, g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


MASKS = {
    "left padding": [[0, 0, 1, 1, 1, 1, 1], [1] * 7, [0, 0, 0, 0, 0, 0, 1]],
    "holes, a row with none": [[1, 0, 1, 1, 0, 1, 1], [0] * 7, [1, 1, 0, 0, 1, 0, 1]],
}


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
@pytest.mark.parametrize("kwargs", [{}, {"go_backwards": True}, {"zero_output_for_mask": True},
                                    {"return_sequences": False}, {"unroll": True}])
def test_any_mask_and_loop_option_matches_keras_outputs_states_and_gradients(mask, kwargs):
    ours, theirs = pair(**kwargs, return_state=True)
    x = masked_inputs()
    mask = tf.constant(np.array(mask, bool))
    h0 = np.full((3, 6), 0.3, "float32")
    c0 = np.full((3, 6), -0.2, "float32")
    rng = np.random.default_rng(2)
    seeds = {3: rng.normal(size=(3, 7, 6)).astype("float32"), 2: rng.normal(size=(3, 6)).astype("float32")}
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            output, h, c = layer(x, mask=mask, initial_state=[h0, c0], training=True)
            # Every output position and the final cell state feed the gradients.
            loss = tf.reduce_sum(output * seeds[output.shape.rank]) + tf.reduce_sum(c * seeds[2])
        results.append(([output.numpy(), h.numpy(), c.numpy()],
                        [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]))
    (y_ours, g_ours), (y_theirs, g_theirs) = results
    for a, b in zip(y_ours + g_ours, y_theirs + g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(y_ours[2], c0)  # the loop ran real steps


def test_initial_state_and_returned_states_match_keras():
    ours, theirs = pair()
    for layer in (ours, theirs):
        layer.return_state = True
    x = masked_inputs()
    h0 = np.full((3, 6), 0.3, "float32")
    c0 = np.full((3, 6), -0.2, "float32")
    for got, want in zip(ours(x, initial_state=[h0, c0]), theirs(x, initial_state=[h0, c0])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_recurrent_dropout_in_training_matches_keras_loop_with_the_same_masks():
    """Keras's variational recurrent dropout (one mask per gate and sequence), in the package's loop."""
    ours, theirs = pair(recurrent_dropout=0.5, seed=7)  # same seed: both cells draw the same four masks
    x = masked_inputs()
    mask = tf.reduce_any(x != 0.0, axis=-1)
    (y_ours, g_ours), (y_theirs, g_theirs) = outputs_and_gradients((ours, theirs), x, mask)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_ours, g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(y_ours, ours(x, mask=mask, training=False).numpy(), atol=1e-3)  # it did drop
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), rtol=1e-5, atol=1e-5)


def test_training_with_input_dropout_uses_keras_loop_and_its_dropout():
    ours, theirs = pair(dropout=0.5)
    x = masked_inputs()
    keras.utils.set_random_seed(3)
    dropped = ours(x, training=True).numpy()
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), rtol=1e-5, atol=1e-5)
    assert not np.allclose(dropped, ours(x, training=False).numpy(), atol=1e-3)


@pytest.mark.slow  # trains and generates with both layers
def test_build_model_uses_it_and_models_with_keras_lstm_still_generate(vocab, tiny_model):
    """Models saved before PerGateLSTM have keras.layers.LSTM: generation treats both alike."""
    assert isinstance(tiny_model.get_layer("lstm_0"), PerGateLSTM)
    config = tiny_model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "PerGateLSTM":
            layer.update(class_name="LSTM", module="keras.layers", registered_name=None)
            layer["config"].pop("one_hot_inputs")
    old = keras.Sequential.from_config(config, custom_objects={"TokenEncoding": ktg.TokenEncoding})
    old.set_weights(tiny_model.get_weights())
    assert type(old.get_layer("lstm_0")) is keras.layers.LSTM
    prompts = ["the ", "a"]
    got = ktg.generate(old, vocab, prompts, max_length=20, temperature=0.0)
    want = ktg.generate(tiny_model, vocab, prompts, max_length=20, temperature=0.0)
    assert got == want


def test_use_cudnn_true_without_a_gpu_fails_as_in_keras():
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is present: cuDNN runs")
    for cls in (PerGateLSTM, keras.layers.LSTM):
        with pytest.raises(ValueError, match="use_cudnn=True"):
            cls(4, use_cudnn=True)(masked_inputs())


def one_hot_inputs():
    """3 rows of 7 one-hot steps over 5 columns, with all-zero rows (padding) in two rows."""
    ids = np.random.default_rng(3).integers(0, 5, size=(3, 7))
    x = np.eye(5, dtype="float32")[ids]
    x[0, 4:] = 0.0
    x[2, 1:] = 0.0
    return x


@pytest.mark.parametrize("masked", [True, False], ids=["masked zero rows", "unmasked zero rows"])
@pytest.mark.parametrize("kwargs", [{}, {"use_bias": False}, {"go_backwards": True}])
def test_one_hot_inputs_read_kernel_rows_with_keras_outputs_and_weight_gradients(masked, kwargs):
    """`one_hot_inputs=True` gives Keras's LSTM on one-hot rows, and all-zero rows read zeros even unmasked."""
    ours, theirs = pair(**kwargs)
    ours.one_hot_inputs = True
    x = one_hot_inputs()
    mask = tf.reduce_any(x != 0.0, axis=-1) if masked else None
    (y_ours, g_ours), (y_theirs, g_theirs) = outputs_and_gradients((ours, theirs), x, mask)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    assert np.abs(g_ours[0]).sum() > 0  # the kernel gets its gradient through the row reads
    for a, b in zip(g_ours, g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_build_model_reads_one_hot_rows_in_the_first_lstm_only_and_saves_the_option(vocab, tmp_path):
    model = ktg.build_model(vocab, units=8, layers=2)
    assert [layer.one_hot_inputs for layer in model.layers if isinstance(layer, PerGateLSTM)] == [True, False]
    embedded = ktg.build_model(vocab, units=8, layers=1, embedding_dim=4)
    assert not [layer for layer in embedded.layers if isinstance(layer, PerGateLSTM)][0].one_hot_inputs
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("lstm_0").one_hot_inputs
    ids = np.array([[1, 5, 6, 0, 0], [7, 8, 9, 5, 2]])
    np.testing.assert_allclose(loaded(ids), model(ids), rtol=1e-6, atol=1e-6)
