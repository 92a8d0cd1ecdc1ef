"""The model: token ids -> TokenEncoding -> Masking -> LSTM/GRU stack -> Dense logits."""

import math
import weakref

import keras
import tensorflow as tf

from keras_textgen import errors
from keras_textgen import losses
from keras_textgen.layers import TokenEncoding
from keras_textgen.lstm import PerGateLSTM
from keras_textgen.vocab import PAD_ID

CELLS = {"lstm": PerGateLSTM, "gru": keras.layers.GRU}


def build_model(vocab, units=256, layers=1, cell="lstm", embedding_dim=None, dropout=0.0, recurrent_dropout=0.0,
                learning_rate=5e-3, clipnorm=1.0, steps_per_execution=1, compile=True, weight_decay=None,
                targets_per_sequence=None):
    """Builds (and compiles) the `keras.Sequential` next-token model.

    Padding is masked end to end: `TokenEncoding` maps the pad id to the zero
    vector, `Masking` turns that into a Keras mask, the recurrent layers skip
    masked steps (their state passes through unchanged) and the loss ignores
    masked positions.

    Args:
        vocab: the `Vocabulary` (or its size, an int).
        units: width of each recurrent layer.
        layers: number of stacked recurrent layers.
        cell: `"lstm"` (a `PerGateLSTM`: `keras.layers.LSTM` with a faster CPU
            time loop) or `"gru"` (`keras.layers.GRU`).
        embedding_dim: `None` for one-hot inputs (best for characters), or the
            width of a trainable embedding (best for words).
        dropout: dropout rate between layers (0 turns it off).
        recurrent_dropout: the recurrent layers' own `recurrent_dropout` (Keras's
            variational dropout of the state entering each gate, one mask
            per sequence; 0 turns it off).
        learning_rate: the optimizer's learning rate, a float or a
            `keras.optimizers.schedules.LearningRateSchedule` (such as
            `keras_textgen.schedules.WarmupCosineDecay`).
        clipnorm: gradient norm clipping (`None` turns it off).
        weight_decay: `None` or 0 for Adam; else AdamW with this decoupled
            weight decay on every weight but the biases.
        steps_per_execution: training steps per `tf.function` call of
            `model.fit`, as for `keras.Model.compile` (see
            `keras_textgen.steps.steps_per_execution_for`).
        compile: compile with sparse categorical cross-entropy on logits.
        targets_per_sequence: `None` for Keras's `SparseCategoricalCrossentropy`
            (each batch's mean over its real targets), or the training
            data's mean number of real targets per sequence, for a
            `keras_textgen.losses.TokenCrossentropy` that weighs every
            target alike across batches (what `keras-textgen train` uses;
            it matters in lines mode, whose batches differ in length).

    Returns:
        A `keras.Sequential` mapping int32 `[batch, T]` to logits
        `[batch, T, vocab_size]`.

    Example:

    >>> model = build_model(Vocabulary(list("abc")), units=8, layers=1)
    >>> model(np.array([[2, 3, 4]])).shape
    TensorShape([1, 3, 6])
    """
    vocab_size = vocab if isinstance(vocab, int) else vocab.size
    if units < 1 or layers < 1:
        raise errors.ConfigError(f"units and layers must be >= 1, got units={units}, layers={layers}")
    if cell not in CELLS:
        raise errors.ConfigError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        if not 0.0 <= rate < 1.0:
            raise errors.ConfigError(f"{name} must be in [0, 1), got {rate}")
    stack = [
        keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        TokenEncoding(vocab_size, embedding_dim, name="token_encoding"),
        keras.layers.Masking(mask_value=0.0, name="masking"),
    ]
    for i in range(layers):
        # The first LSTM of a one-hot model reads its input projection as kernel rows.
        options = {"one_hot_inputs": True} if cell == "lstm" and i == 0 and embedding_dim is None else {}
        if recurrent_dropout:
            options["recurrent_dropout"] = recurrent_dropout
        stack.append(CELLS[cell](units, return_sequences=True, name=f"{cell}_{i}", **options))
        if dropout:
            stack.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    stack.append(keras.layers.Dense(vocab_size, name="logits"))
    model = keras.Sequential(stack, name=f"textgen_{cell}")
    if compile:
        if weight_decay:
            optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                                               clipnorm=clipnorm)
            optimizer.exclude_from_weight_decay(var_names=["bias"])
        else:
            optimizer = keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm)
        model.compile(
            optimizer=optimizer,
            loss=losses.next_token_loss(targets_per_sequence),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            steps_per_execution=steps_per_execution,
        )
        # Without a tf.distribute strategy, Keras's TensorFlow trainer builds the optimizer inside the
        # first trace of its train function, and a tf.function that creates variables on its first
        # call is traced twice (tensorflow/tensorflow#48851). Built here, `fit` traces its step once.
        model.optimizer.build(model.trainable_variables)
    return model


def recurrent_layers(model):
    """The model's recurrent layers, in order."""
    # keras.layers.LSTM, not PerGateLSTM: models saved before PerGateLSTM have Keras's own.
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))]


def per_token_loss(model, dataset):
    """Mean next-token loss over every real target of a dataset, each token weighted alike.

    With Keras's default loss `model.evaluate` averages the masked mean of
    each batch, so with length-bucketed lines a batch of short lines
    (speaker names, say) counts as much as a batch of long ones, and the
    figure drifts from the loss per token (on Tiny Shakespeare lines: 1.91
    against 2.06 bits/char). `keras_textgen.losses.TokenCrossentropy`, the
    loss `keras-textgen train` compiles, comes close to it (exact where the
    sequences hold `targets_per_sequence` on average). This is exact: it
    sums the loss over all real targets (target != pad) and divides once.

    A compiled `keras.metrics.SparseCategoricalCrossentropy` does not do this
    either (Keras 3.15, `reduction_metrics.py`): `Mean.update_state` reduces each batch
    to per-sample means over its padded width T, so batch b adds
    `sum(loss * mask) / T_b` to the total and `sum(mask) / T_b` to the count,
    which weighs short-line batches up whenever T varies between batches, as
    it does with bucketing. It is exact only in chunks mode, where T is fixed.

    Args:
        model: a model from `build_model` (logits out).
        dataset: batches of `(inputs, targets)`, as `make_dataset` gives.

    Returns:
        `(nats_per_token, tokens)`: a float and the number of real targets.

    Example:

    >>> nats, tokens = per_token_loss(model, make_dataset(val_lines, vocab, shuffle=False))
    >>> bits(nats)  # bits per char for a char model
    """
    sums = _loss_sums.get(model)
    if sums is None:  # traced once per model, however often it is scored (a training curve)
        sums = _loss_sums[model] = _loss_sums_fn(model)
    total = count = 0.0
    for x, y in dataset:
        batch_total, batch_count = sums(tf.cast(x, tf.int32), tf.cast(y, tf.int32))
        total += float(batch_total)
        count += float(batch_count)
    if not count:
        raise errors.DataError("the dataset has no real targets to score")
    return total / count, int(count)


_loss_sums = weakref.WeakKeyDictionary()  # model -> its `_loss_sums_fn`


def _loss_sums_fn(model):
    """A `tf.function` (x, y) -> (summed loss over the real targets, their count)."""
    model = weakref.ref(model)  # the cache entry must not keep its own key alive

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2, autograph=False)
    def sums(x, y):
        logits = model()(x, training=False)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        real = tf.cast(tf.not_equal(y, PAD_ID), tf.float32)
        return tf.reduce_sum(tf.cast(nll, tf.float32) * real), tf.reduce_sum(real)
    return sums


def bits(nats):
    """Converts a loss in nats per token to bits per token."""
    return nats / math.log(2.0)
