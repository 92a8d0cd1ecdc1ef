"""The numeric generation loop: one recurrent step per token, prompt priming, sampling per strategy.

`Decoder` is a model's next-token step built from its own Keras layers and
weights: every LSTM layer steps with `keras_textgen.lstm`'s gate-by-gate
arithmetic (the same code `PerGateLSTM` trains with), other cells (GRU) with
their Keras cell. `continue_ids` primes the states on the prompts and runs
the loop; it holds only dense tensors, so XLA can compile it.

One layout and one loop over the whole batch: running a large batch as
loops over slices of its rows made 64 prompts faster on this project's CPU
host, but it cost the first call and every load of a SavedModel more than
a typical request gained (`bench/HISTORY.md`).
"""

import math

import keras
import tensorflow as tf

from keras_textgen import lstm as lstm_lib
from keras_textgen import sampling as sampling_lib
from keras_textgen import vocab as vocab_lib

# Generation steps per while-loop iteration in graph mode (not XLA). The
# executor pays a fixed cost per loop iteration (on a GPU also a host round
# trip for the loop condition); unrolling spreads it over several tokens,
# for a larger graph: a longer first trace and SavedModel load. XLA has no
# such cost and uses 1.
DECODE_UNROLL = 4


class Decoder:
    """A model's one-token step, with its weights laid out once (build it inside the `tf.function`).

    Args:
        parts: `(encoding, recurrent_layers, head)` of the model.
        one_hot: the first layer reads one-hot tokens (`TokenEncoding` with no
            embedding), so an LSTM there reads its input projection as table
            rows (`lstm.gate_weights(one_hot_inputs=True)`).
        banned: fold `-inf` for the pad and OOV ids into the head's bias, so
            the logits come out ready for sampling.
    """

    def __init__(self, parts, one_hot, banned=False):
        self.encoding, self.layers, head = parts
        self.one_hot = one_hot
        self.gates = [lstm_lib.gate_weights(layer.cell, one_hot and n == 0)
                      if isinstance(layer, keras.layers.LSTM) else None for n, layer in enumerate(self.layers)]
        self.state_shapes = state_shapes(self.layers)
        self.units = self.layers[-1].cell.units
        bias = head.bias if head.use_bias else 0.0
        ban = banned_bias(head.units) if banned else 0.0
        if head.activation is keras.activations.linear:  # the ban folded into the bias: no add per step
            bias = bias + ban
            self.head = lambda x: tf.matmul(x, head.kernel) + bias
        else:
            self.head = lambda x: head(x) + ban

    def cells(self, tokens, states):
        """Int32 tokens `[batch]` and the flat states -> `(last layer's output, new states)`."""
        x = tokens if self.gates[0] is not None and self.one_hot else self.encoding(tokens)
        states, new_states = list(states), []
        for layer, gates, shapes in zip(self.layers, self.gates, self.state_shapes):
            layer_states, states = states[:len(shapes)], states[len(shapes):]
            if gates is not None:
                x, c = lstm_lib.step_gates(layer.cell, gates, lstm_lib.project_gates(gates, x), *layer_states)
                new_states += [x, c]
            else:
                x, layer_new = layer.cell(x, layer_states, training=False)
                new_states += layer_new if isinstance(layer_new, (list, tuple)) else [layer_new]
        return x, new_states

    def step(self, tokens, states):
        """Int32 tokens `[batch]` -> `(logits [batch, V], new states)`."""
        x, new_states = self.cells(tokens, states)
        return self.head(x), new_states


def state_shapes(layers):
    """The states of each recurrent layer: `[units, units]` (h, c) for an LSTM, `[units]` for a GRU."""
    return [[layer.units] * (2 if isinstance(layer, keras.layers.LSTM) else 1) for layer in layers]


def zero_states(shapes, batch_size):
    """Zero states for `state_shapes`: a flat list, `[h, c]` per LSTM layer (`[h]` per GRU layer)."""
    return [tf.zeros([batch_size, units]) for layer_shapes in shapes for units in layer_shapes]


def banned_bias(vocab_size):
    """`[V]`: 0, and -inf at the ids generation never emits (pad, OOV)."""
    banned = sampling_lib.BANNED_IDS
    return tf.scatter_nd([[i] for i in banned], tf.fill([len(banned)], -math.inf), [vocab_size])


def prime(decoder, ids, lengths, unroll=1):
    """Runs right-padded prompt ids `[batch, T]` through the cells.

    Rows stop updating their state after their own length, so prompts of
    different lengths share one batch. Returns the head's logits after each
    row's last prompt token and the states there. `unroll` steps run per
    loop iteration: the steps past `T` repeat the last position, and every
    row is frozen there already.
    """
    batch = tf.shape(ids)[0]
    steps = tf.shape(ids)[1]
    time_major = tf.transpose(ids)  # each step reads a contiguous row

    def body(t, x, states):
        for j in range(unroll):
            step_x, step_states = decoder.cells(time_major[tf.minimum(t + j, steps - 1)], states)
            active = (t + j < lengths)[:, None]
            states = [tf.where(active, new, old) for new, old in zip(step_states, states)]
            x = tf.where(active, step_x, x)
        return t + unroll, x, states

    _, x, states = tf.while_loop(lambda t, *_: t < steps, body,
                                 (tf.constant(0), tf.zeros([batch, decoder.units]), zero_states(decoder.state_shapes, batch)),
                                 parallel_iterations=1)
    return decoder.head(x), states


def decode(decoder, logits, states, max_length, pick, unroll=1):
    """The generation loop: `pick(logits, i)` chooses token `i`, one step each.

    `logits` (banned) and `states` are the primed ones. A row is finished
    once it has emitted EOS; it emits pad after that, and the loop stops when
    every row is finished. Sampled ids are never pad or OOV, so "id > EOS"
    means "real text, still going". Each loop iteration runs `unroll` steps;
    the steps past the end are computed and dropped, so the tokens do not
    depend on it.

    Returns:
        `(tokens, steps)`: int32 `[batch, max_length]`, and how many
        positions the loop ran (every row has ended by then; the rest is pad).
    """
    token = pick(logits, 0)
    # Pre-sized (XLA needs a fixed size); unwritten rows stack as 0, the pad id.
    tokens = tf.TensorArray(tf.int32, size=max_length + unroll - 1, element_shape=tf.TensorShape([None]))
    tokens = tokens.write(0, token)

    def cond(i, token, states, tokens):
        return tf.logical_and(i < max_length, tf.reduce_any(token > vocab_lib.EOS_ID))

    def body(i, token, states, tokens):
        for j in range(unroll):
            logits, states = decoder.step(token, states)
            token = tf.where(token > vocab_lib.EOS_ID, pick(logits, i + j), vocab_lib.PAD_ID)
            tokens = tokens.write(i + j, token)
        return i + unroll, token, states, tokens

    steps, _, _, tokens = tf.while_loop(cond, body, (tf.constant(1), token, list(states), tokens),
                                        parallel_iterations=1)
    return tf.transpose(tokens.stack()[:max_length]), tf.minimum(steps, max_length)


def continue_ids(decoder, ids, lengths, max_length, temperature, top_k, top_p, seed, unroll=DECODE_UNROLL):
    """Primes on prompt ids, then generates: the numeric part of `TextGenerator.generate`.

    Only dense tensors and no string ops, so XLA can compile it; shapes are
    fixed by the batch size and `max_length`. The sampling strategy
    (`sampling.pick_index`) is chosen once, by one `tf.switch_case` around
    the loop, so each loop body holds only its own strategy's ops.

    Args:
        decoder: a banned `Decoder`.
        ids: int32 `[batch, T]`, each row `[EOS] + prompt ids`, right-padded.
        lengths: int32 `[batch]`, the real length of each row.
        max_length, temperature, top_k, top_p, seed: as in `generate`.
        unroll: steps per loop iteration (the same tokens for any value; see
            `DECODE_UNROLL`).

    Returns:
        `(tokens, steps)`: int32 `[batch, max_length]` (pad after each row's
        end) and the number of positions the loop ran.
    """
    logits, states = prime(decoder, ids, lengths, unroll)

    def loop(pick_fn):
        def pick(x, i):
            return pick_fn(x, temperature, top_k, top_p, tf.stack([seed, tf.cast(i, tf.int64)]))
        return lambda: decode(decoder, logits, states, max_length, pick, unroll)

    return tf.switch_case(sampling_lib.pick_index(temperature, top_k, top_p),
                          [loop(pick_fn) for pick_fn in sampling_lib.PICKS])
