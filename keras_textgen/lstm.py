"""`keras.layers.LSTM` with its time loop computed gate by gate (faster on CPU)."""

import collections

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="keras_textgen")
class PerGateLSTM(keras.layers.LSTM):
    """`keras.layers.LSTM`, with a time loop that never splits the gates' pre-activations.

    The same layer, weights and arithmetic as `keras.layers.LSTM` (it is a
    subclass: same arguments, same `kernel`, `recurrent_kernel` and `bias`,
    same outputs, same gradients); only the CPU time loop differs. Keras's
    loop computes each step's `[batch, 4 units]` pre-activations with one
    matmul and splits them into the four gates, which copies them, and its
    gradient concatenates them back. Here the kernels are split into their
    gate columns once per call, outside the loop, and each step runs one
    small matmul per gate and input (8 instead of 2), which are independent,
    so TensorFlow's inter-op pool runs them side by side on a multi-core
    CPU. LSTM(128) trains 14-20% faster at batch 512 and about 5% at batch
    64 on the benchmark's 2-core CPU (one intra-op thread).

    The time loop is the package's own `tf.while_loop` with Keras's
    semantics for masks (a masked step keeps the states and repeats the
    last output, or zeros with `zero_output_for_mask`), `go_backwards` and
    `return_sequences`; a test checks them all against Keras's layer.
    Keras's own loop still runs where it is the better one: on a machine
    with a GPU (cuDNN; `use_cudnn=True` behaves as in Keras, an error
    without one), with `unroll=True`, and in training with input `dropout`.
    `recurrent_dropout` runs in this loop, with the masks Keras's cell draws.

    With `one_hot_inputs=True` the layer takes its input rows to be one-hot
    vectors or all zeros (what `TokenEncoding` gives, and what `build_model`
    sets for a first LSTM fed one-hot), and reads each step's input
    projection as a row of the kernel instead of multiplying by it: the same
    arithmetic (a one-hot row times the kernel is that row, exactly; an
    all-zero row reads a zero row) for a third fewer matmul FLOPs per step
    in LSTM(128) on ~65 characters, and no gradient with respect to the
    inputs (there is nothing trainable before a one-hot encoding).
    LSTM(128) at batch 512 trained 5% faster (alternating runs on the
    benchmark's 2-core CPU, 2026-11-30). Other input rows give wrong
    results, so leave it off unless the inputs are one-hot.

    Args:
        units, **kwargs: as for `keras.layers.LSTM`.
        one_hot_inputs: the inputs are one-hot or all-zero rows (see above).

    Example:

    >>> layer = PerGateLSTM(8, return_sequences=True)
    >>> layer(np.zeros([2, 5, 3], "float32")).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, units, one_hot_inputs=False, **kwargs):
        super().__init__(units, **kwargs)
        self.one_hot_inputs = bool(one_hot_inputs)

    def get_config(self):
        return {**super().get_config(), "one_hot_inputs": self.one_hot_inputs}

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        cudnn = self.use_cudnn is True or (self.use_cudnn == "auto" and tf.config.list_logical_devices("GPU"))
        if cudnn or self.unroll or (training and cell.dropout):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.one_hot_inputs:
            # The token ids back: 0 for an all-zero row, else 1 + the hot column (see `one_hot_table`).
            sequences = tf.where(tf.reduce_any(sequences != 0, axis=-1),
                                 tf.argmax(sequences, axis=-1, output_type=tf.int32) + 1, 0)
        weights = gate_weights(cell, self.one_hot_inputs)
        # Keras's variational recurrent dropout: one mask per gate for the whole sequence, drawn (and cached
        # in the cell) by `keras.layers.RNN.call` before this loop runs, as its own loop reads them.
        dropped = cell.get_recurrent_dropout_mask(initial_state[0]) if training and cell.recurrent_dropout else None

        def step(x, states):
            h, c = step_gates(cell, weights, project_gates(weights, x), *states, recurrent_masks=dropped)
            return h, [h, c]

        return _time_loop(step, sequences, list(initial_state), mask, go_backwards=self.go_backwards,
                          zero_output_for_mask=self.zero_output_for_mask,
                          return_all_outputs=self.return_sequences)


def one_hot_table(kernel):
    """`kernel` with a zero row on top, so that row `id` is `one_hot(id) @ kernel` for token ids.

    `TokenEncoding` encodes id `k > 0` as the one-hot row with column
    `k - 1` hot and the pad id 0 as all zeros, so reading row `id` of this
    table gives exactly the input projection of that encoding, pad included.
    """
    return tf.concat([tf.zeros_like(kernel[:1]), kernel], axis=0)


class GateWeights(collections.namedtuple("GateWeights", ["inputs", "recurrent", "biases", "one_hot"])):
    """An LSTM cell's weights split by gate, in Keras's order (i, f, c, o); see `gate_weights`."""


def gate_weights(cell, one_hot_inputs=False):
    """Splits a `keras.layers.LSTMCell`'s weights into its four gates' columns, once per call.

    This is the one place the package lays out LSTM weights: `PerGateLSTM`'s
    time loop, `TextGenerator.step` and the generation loop all step with
    `project_gates` and `step_gates` on these. Each gate has its own input
    kernel and recurrent kernel, so a step never splits (copies) the
    `[batch, 4 units]` pre-activations, and its gradient never concatenates
    them back; the eight small matmuls are independent and run side by side
    on a multi-core CPU.

    With `one_hot_inputs` the inputs are token ids standing for one-hot rows
    (see `one_hot_table`): each gate's input weight is a table read by row,
    with the bias folded in (row 0, the pad id, is the bias alone, what an
    all-zero input gives), and `biases` are `None`.

    Returns:
        A `GateWeights` `(inputs, recurrent, biases, one_hot)`: lists of four
        tensors each (`biases` of `None` where there is no separate bias).

    Example:

    >>> cell = keras.layers.LSTMCell(8); cell.build((None, 3))
    >>> w = gate_weights(cell)
    >>> h, c = step_gates(cell, w, project_gates(w, tf.ones([2, 3])), tf.zeros([2, 8]), tf.zeros([2, 8]))
    >>> h.shape
    TensorShape([2, 8])
    """
    kernel = cell.kernel
    bias = cell.bias if cell.use_bias else None
    if one_hot_inputs:
        kernel = one_hot_table(kernel)
        if bias is not None:
            kernel, bias = kernel + bias, None
    biases = [None] * 4 if bias is None else ops.split(bias, 4, axis=0)
    return GateWeights(ops.split(kernel, 4, axis=1), ops.split(cell.recurrent_kernel, 4, axis=1), biases,
                       bool(one_hot_inputs))


def project_gates(weights, x):
    """Each gate's input projection of `x`, bias included: four `[batch, units]` tensors.

    `x` is `[batch, input_dim]` floats, or int32 token ids `[batch]` for
    one-hot weights.
    """
    out = []
    for kernel, bias in zip(weights.inputs, weights.biases):
        z = tf.gather(kernel, x) if weights.one_hot else ops.matmul(x, kernel)
        out.append(z if bias is None else z + bias)
    return out


def step_gates(cell, weights, projected, h, c, recurrent_masks=None):
    """One LSTM step from the gates' input projections: Keras's `LSTMCell` arithmetic, gate by gate.

    `recurrent_masks`: `None`, or the four gates' recurrent dropout masks
    (`[batch, units]` each, as `LSTMCell.get_recurrent_dropout_mask` gives),
    applied to `h` where it enters each gate, as Keras's cell does.

    Returns:
        The new `(h, c)`.
    """
    gate_h = [h] * 4 if recurrent_masks is None else [h * m for m in recurrent_masks]
    z_i, z_f, z_c, z_o = [p + ops.matmul(h_, r) for p, h_, r in zip(projected, gate_h, weights.recurrent)]
    i = cell.recurrent_activation(z_i)
    f = cell.recurrent_activation(z_f)
    c = f * c + i * cell.activation(z_c)
    o = cell.recurrent_activation(z_o)
    return o * cell.activation(c), c


def _time_loop(step, sequences, states, mask, go_backwards, zero_output_for_mask, return_all_outputs):
    """Keras's RNN time loop (`keras.layers.RNN` semantics), as one `tf.while_loop`.

    `sequences` are `[batch, time, ...]` (`[batch, time]` ids for one-hot
    inputs); `step(x_t, states) -> (output, new_states)` with `output` the
    new first state. At a masked step the states stay, and the output is the previous
    one (zeros before any), or zeros with `zero_output_for_mask`.

    Returns:
        `(last_output, outputs, states)` as `keras.layers.RNN.inner_loop`:
        `outputs` is `[batch, time, units]`, or `[batch, 1, units]` (the
        last) without `return_all_outputs`.
    """
    inputs = tf.transpose(sequences, [1, 0, *range(2, sequences.shape.rank)])  # time-major
    zeros = tf.zeros_like(states[0])
    if mask is not None:
        # [time, batch, units], tiled once here: a broadcasting `where` in the loop would add a
        # gradient reduction per step when the shapes are dynamic.
        mask = tf.transpose(tf.cast(mask, tf.bool))[:, :, None]
        mask = tf.logical_and(mask, tf.ones_like(zeros, tf.bool)[None])
    if go_backwards:
        inputs = tf.reverse(inputs, [0])
        mask = None if mask is None else tf.reverse(mask, [0])
    time_steps = inputs.shape[0] or tf.shape(inputs)[0]  # static when known, as Keras's loop
    inputs = tf.TensorArray(inputs.dtype, size=time_steps).unstack(inputs)
    if mask is not None:
        mask = tf.TensorArray(tf.bool, size=time_steps).unstack(mask)
    outputs = tf.TensorArray(zeros.dtype, size=time_steps if return_all_outputs else 1,
                             element_shape=zeros.shape)

    def body(t, outputs, previous, states):
        output, new_states = step(inputs.read(t), states)
        if mask is not None:
            keep = mask.read(t)
            output = tf.where(keep, output, zeros if zero_output_for_mask else previous)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
        outputs = outputs.write(t if return_all_outputs else 0, output)
        return t + 1, outputs, output, list(new_states)

    _, outputs, last_output, states = tf.while_loop(
        lambda t, *_: t < time_steps, body, (0, outputs, zeros, states),
        maximum_iterations=time_steps, parallel_iterations=32, swap_memory=True)
    return last_output, tf.transpose(outputs.stack(), [1, 0, 2]), states
