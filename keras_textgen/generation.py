"""State-carrying text generation in one `tf.function`.

The prompt is run once through the recurrent cells to prime their state;
after that every new token costs exactly one cell step (no re-run of the
prefix). Priming and generation are `tf.while_loop`s and sampling is stateless
(`keras_textgen.sampling`), so the whole loop is a graph that exports to a
SavedModel unchanged, and that XLA can compile (`jit_compile=True`).
"""

import functools
import math
import random
import re

import keras
import tensorflow as tf

from keras_textgen import errors
from keras_textgen import lstm as lstm_lib
from keras_textgen import model as model_lib
from keras_textgen import sampling as sampling_lib
from keras_textgen import vocab as vocab_lib

MAX_PROMPT_TOKENS = 2048
MAX_GENERATE_TOKENS = 100_000
# Generation steps per while-loop iteration in graph mode (not XLA): 4 made
# one prompt ~30% and 64 prompts ~15% faster than 1 on the 2-core CPU here
# (medians, 2026-11-29) for ~1 s more tracing; 8 added less and cost 3.5 s.
DECODE_UNROLL = 4
# Batches of at least DECODE_SHARD_MIN_ROWS prompts run as DECODE_SHARDS
# independent loops over slices of the rows (graph mode, not XLA), which the
# executor runs side by side, one per core: with 64 prompts the 2-core CPU
# here made 265-274k chars/s against 221-231k for one loop (32 prompts: 238k
# against 198-202k), 4 shards 244-248k. Below 16 rows it was slower (8 rows:
# 140-144k against 148-156k), and XLA runs one loop at a time (214k against
# 254-257k), so both keep one loop. 2026-11-30.
DECODE_SHARDS = 2
DECODE_SHARD_MIN_ROWS = 16


class _KerasParts:
    """The model and the layers a generation step calls (deliberately not trackable)."""

    def __init__(self, model):
        self.model = model
        self.encoding = model.get_layer("token_encoding")
        self.recurrent = model_lib.recurrent_layers(model)
        self.head = model.layers[-1]


class TextGenerator(tf.Module):
    """A trained model and its vocabulary as graph functions: step, generate, score.

    It reuses the model's own layers (so weights are shared, not copied):
    `TokenEncoding`, each recurrent layer's cell and the final `Dense`.
    This is also the module that `keras_textgen.export` saves.

    Args:
        model: a model from `build_model` (trained or not).
        vocab: its `Vocabulary`.

    Example:

    >>> gen = TextGenerator(model, vocab)
    >>> out = gen.generate(tf.constant(["Hello"]), max_length=20, temperature=0.0)
    >>> out["text"].shape
    TensorShape([1])
    """

    def __init__(self, model, vocab, name=None):
        super().__init__(name=name)
        if model.output_shape[-1] != vocab.size:
            raise errors.ArtifactError(
                f"the model predicts {model.output_shape[-1]} ids but the vocabulary has {vocab.size}")
        # The Keras objects sit in a plain holder that tf.Module does not track:
        # tracking the Keras model would make `tf.saved_model.save` write a
        # second copy of every variable, which the TF1 loader of TensorFlow
        # Serving restores while the functions read the first. The module
        # tracks the underlying tf.Variables instead.
        self._keras = _KerasParts(model)
        self.model_variables = [v.value for v in model.variables]
        self.level = vocab.level
        self.lowercase = vocab.lowercase
        self.vocab_size = vocab.size
        # Lookup tables are plain TF resources built from constants, so a
        # SavedModel carries them and any loader (TF2 or the TF1 loader used by
        # TensorFlow Serving) initialises them with no side files.
        self.id_to_token = tf.constant(vocab.get_vocabulary())
        tokens = vocab.get_vocabulary()[vocab_lib.EOS_ID:]
        self.token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tokens), tf.range(vocab_lib.EOS_ID, vocab.size, dtype=tf.int64)),
            default_value=vocab_lib.OOV_ID)
        first = self._keras.recurrent[0]
        self._one_hot_lstm = self._keras.encoding.output_dim is None and isinstance(first, keras.layers.LSTM)
        self.state_shapes = []
        for layer in self._keras.recurrent:
            n_states = 2 if isinstance(layer, keras.layers.LSTM) else 1
            self.state_shapes.append([layer.units] * n_states)

    # -- building blocks ------------------------------------------------------
    def encode(self, texts):
        """String `[batch]` -> ragged int32 ids (OOV for unknown tokens)."""
        tokens = vocab_lib.tokenize(texts, self.level, self.lowercase)
        return tf.cast(tf.ragged.map_flat_values(self.token_to_id.lookup, tokens), tf.int32)

    def decode(self, ids):
        """Int ids `[batch, T]` -> strings `[batch]`, cut at EOS."""
        return vocab_lib.decode(ids, self.id_to_token, self.level)

    def initial_state(self, batch_size):
        """Zero states: a flat list, `[h, c]` per LSTM layer (`[h]` per GRU layer)."""
        return [tf.zeros([batch_size, units]) for shapes in self.state_shapes for units in shapes]

    def step(self, tokens, states):
        """One token per row -> next-token logits and the new states.

        Args:
            tokens: int32 `[batch]`.
            states: flat list of float32 `[batch, units]`, as `initial_state`.

        Returns:
            `(logits [batch, V], new_states)`.
        """
        new_states, i = [], 0
        for n, (layer, shapes) in enumerate(zip(self._keras.recurrent, self.state_shapes)):
            layer_states = list(states[i:i + len(shapes)])
            i += len(shapes)
            if n == 0 and self._one_hot_lstm:
                x, layer_new = self._first_lstm_step(tokens, layer_states)
            else:
                if n == 0:
                    x = self._keras.encoding(tokens)
                x, layer_new = layer.cell(x, layer_states, training=False)
            layer_new = layer_new if isinstance(layer_new, (list, tuple)) else [layer_new]
            new_states.extend(layer_new)
        return self._keras.head(x), new_states

    def _first_lstm_step(self, tokens, states):
        """The first LSTM cell on one-hot input, with the input matmul done as a row lookup.

        `one_hot(id)[1:] @ kernel` is row `id - 1` of the kernel (and zero for
        the pad id), so a gather replaces a `[batch, V] x [V, 4 units]`
        matmul: a quarter of a one-layer model's work per generated token.
        The rest is `keras.layers.LSTMCell`'s own arithmetic (gates i, f, c, o),
        with the cell's own activations; tests check it against the Keras model.
        """
        cell = self._keras.recurrent[0].cell
        h, c = states
        rows = tf.gather(cell.kernel, tf.maximum(tokens - 1, 0))
        z = rows * tf.cast(tokens > 0, rows.dtype)[:, None] + tf.matmul(h, cell.recurrent_kernel)
        if cell.use_bias:
            z = z + cell.bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        c = cell.recurrent_activation(z_f) * c + cell.recurrent_activation(z_i) * cell.activation(z_c)
        h = cell.recurrent_activation(z_o) * cell.activation(c)
        return h, [h, c]

    def _banned(self):
        """`[V]`: 0, and -inf at the ids generation never emits (pad, OOV)."""
        banned = tf.scatter_nd([[i] for i in sampling_lib.BANNED_IDS], [-math.inf] * len(sampling_lib.BANNED_IDS),
                               [self.vocab_size])
        return tf.cast(banned, tf.float32)

    def _decoder(self, per_gate=False):
        """The generation loop's step in three parts, with its weights laid out once per call.

        Returns `(project, cells, head)`:
        - `project(tokens)`: the first layer's input for int32 tokens of any
          shape `S`: for a one-hot first LSTM its input projection (with the
          bias), read as rows of a table whose row 0 (pad) is the bias alone,
          what a zero input gives; `[*S, 4 units]`, or a list of four
          `[*S, units]` with `per_gate`. Else the `TokenEncoding` of the tokens;
        - `cells(projected, states)`: `(x, new_states)` from one step of that
          input (`[batch, ...]`) through every recurrent layer;
        - `head(x)`: the logits, with the ban on pad and OOV folded into the
          head's bias, so they come out ready for sampling.

        The same arithmetic as `step`, in fewer or cheaper ops per token (a
        generated token's cost is mostly per-op overhead, not FLOPs): for one
        row (`per_gate=False`) the first LSTM's gate columns are reordered to
        (i, f, o, c), so the three sigmoid gates are one op; for several rows
        (`per_gate=True`) each gate has its own table and recurrent kernel,
        which costs more ops but no splits of the `[batch, 4 units]`
        pre-activations, strided copies that cost more than the matmul from a
        batch of 8 up (1.8x faster per step at 64 rows).
        """
        head_layer = self._keras.head
        head_bias = self._banned() + (head_layer.bias if head_layer.use_bias else 0.0)
        linear_head = head_layer.activation is keras.activations.linear
        if self._one_hot_lstm:
            cell = self._keras.recurrent[0].cell
            u = cell.units
            table = lstm_lib.one_hot_table(cell.kernel)
            if cell.use_bias:
                table = table + cell.bias
            if per_gate:  # Keras's gate order: i, f, c, o
                gate_tables = [table[:, k * u:(k + 1) * u] for k in range(4)]
                gate_kernels = [cell.recurrent_kernel[:, k * u:(k + 1) * u] for k in range(4)]
            else:
                order = tf.concat([tf.range(2 * u), tf.range(3 * u, 4 * u), tf.range(2 * u, 3 * u)], axis=0)
                table = tf.gather(table, order, axis=1)
                recurrent_kernel = tf.gather(cell.recurrent_kernel, order, axis=1)

        def project(tokens):
            if not self._one_hot_lstm:
                return self._keras.encoding(tokens)
            if per_gate:
                return [tf.gather(t, tokens) for t in gate_tables]
            return tf.gather(table, tokens)

        def cells(projected, states):
            states, new_states = list(states), []
            layers = self._keras.recurrent
            x = projected
            if self._one_hot_lstm:
                h, c = states[:2]
                states = states[2:]
                if per_gate:
                    z_i, z_f, z_c, z_o = [p + tf.matmul(h, k) for p, k in zip(projected, gate_kernels)]
                    i, f, o = (cell.recurrent_activation(z) for z in (z_i, z_f, z_o))
                else:
                    z = projected + tf.matmul(h, recurrent_kernel)
                    z_ifo, z_c = tf.split(z, [3 * u, u], axis=1)
                    i, f, o = tf.split(cell.recurrent_activation(z_ifo), 3, axis=1)
                c = f * c + i * cell.activation(z_c)
                h = o * cell.activation(c)
                x, new_states, layers = h, [h, c], layers[1:]
            for layer in layers:
                n = len(layer.cell.state_size) if isinstance(layer.cell.state_size, (list, tuple)) else 1
                x, layer_new = layer.cell(x, states[:n], training=False)
                states = states[n:]
                new_states.extend(layer_new if isinstance(layer_new, (list, tuple)) else [layer_new])
            return x, new_states

        def head(x):
            if linear_head:
                return tf.matmul(x, head_layer.kernel) + head_bias
            return head_layer(x) + self._banned()

        return project, cells, head

    def _decode(self, logits, states, max_length, pick, decoder, unroll=1):
        """The generation loop: `pick(logits, i)` chooses token `i`, one cell step each.

        `logits` (already banned) and `states` are the primed ones;
        `decoder` is `_decoder`'s `(project, cells, head)`. A row is
        finished once it has emitted EOS; it emits pad after that, and the
        loop stops when every row is finished. Sampled ids are never pad or
        OOV, so "id > EOS" means "real text, still going". Each loop
        iteration runs `unroll` steps; the up to `unroll - 1` steps past the
        end are computed and dropped, so the tokens do not depend on it.

        Returns:
            `(tokens, steps)`: int32 `[batch, max_length]`, and how many
            positions the loop ran (every row has ended by then; the rest
            is pad).
        """
        step = _step_of(decoder)
        token = pick(logits, 0)
        # Pre-sized (XLA needs a fixed size); unwritten rows stack as 0, the pad id.
        tokens = tf.TensorArray(tf.int32, size=max_length + unroll - 1, element_shape=tf.TensorShape([None]))
        tokens = tokens.write(0, token)

        def cond(i, token, states, tokens):
            return tf.logical_and(i < max_length, tf.reduce_any(token > vocab_lib.EOS_ID))

        def body(i, token, states, tokens):
            for j in range(unroll):
                logits, states = step(token, states)
                token = tf.where(token > vocab_lib.EOS_ID, pick(logits, i + j), vocab_lib.PAD_ID)
                tokens = tokens.write(i + j, token)
            return i + unroll, token, states, tokens

        steps, _, _, tokens = tf.while_loop(cond, body, (tf.constant(1), token, list(states), tokens),
                                            parallel_iterations=1)
        return tf.transpose(tokens.stack()[:max_length]), tf.minimum(steps, max_length)

    def prime(self, ids, lengths, decoder=None, unroll=1):
        """Runs right-padded prompt ids `[batch, T]` through the cells.

        Rows stop updating their state after their own length, so prompts of
        different lengths share one batch. Returns the logits after each
        row's last prompt token (already banned, as the decoder's head gives
        them) and the states there.

        It steps with the generation loop's cells: `decoder` is `_decoder`'s
        `(project, cells, head)`, so that the caller's loop shares its weight
        layout (`None` makes one in the one-row layout). Only the last output
        goes through the head. `unroll` steps run per loop iteration: the
        steps past `T` repeat the last position, and every row is frozen
        there already.
        """
        project, cells, head = decoder or self._decoder()
        batch = tf.shape(ids)[0]
        steps = tf.shape(ids)[1]
        time_major = tf.transpose(ids)  # each step reads a contiguous row
        states = self.initial_state(batch)
        x = tf.zeros([batch, self._keras.recurrent[-1].cell.units])

        def body(t, x, states):
            for j in range(unroll):
                at = tf.minimum(t + j, steps - 1)
                step_x, step_states = cells(project(time_major[at]), states)
                active = (t + j < lengths)[:, None]
                states = [tf.where(active, new, old) for new, old in zip(step_states, states)]
                x = tf.where(active, step_x, x)
            return t + unroll, x, states

        _, x, states = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), x, states),
            parallel_iterations=1)
        return head(x), states

    def generate(self, prompts, max_length=100, temperature=1.0, top_k=0, top_p=1.0, seed=0, continue_fn=None):
        """Continues each prompt; graph code (wrap in `tf.function` for speed).

        Args:
            prompts: string `[batch]`.
            max_length: int32 scalar, the most tokens to generate per prompt.
            temperature: float32 scalar; 0 = greedy.
            top_k: int32 scalar; 0 = off.
            top_p: float32 scalar; 1.0 = off.
            seed: int64 scalar; the same seed gives the same text.
            continue_fn: what runs the numeric part, `continue_ids` by
                default; `get_generator` passes an XLA-compiled
                `tf.function` of it for `jit_compile=True`.

        Returns:
            A dict: `text` string `[batch]` (the continuation, without the
            prompt, cut at EOS; at word level with a leading space where
            `prompt + text` needs one, see `vocab.continuation_after`), `tokens` int32 `[batch, max_length]` (0 after
            the end) and `lengths` int32 `[batch]`.
        """
        prompts = tf.convert_to_tensor(prompts, tf.string)
        max_length = tf.cast(max_length, tf.int32)
        temperature = tf.cast(temperature, tf.float32)
        top_k = tf.cast(top_k, tf.int32)
        top_p = tf.cast(top_p, tf.float32)
        seed = tf.cast(seed, tf.int64)
        ids = self.encode(prompts)
        checks = [
            tf.debugging.assert_greater(max_length, 0, message="max_length must be > 0"),
            tf.debugging.assert_less_equal(max_length, MAX_GENERATE_TOKENS,
                                           message=f"max_length must be <= {MAX_GENERATE_TOKENS}"),
            tf.debugging.assert_greater_equal(temperature, 0.0,
                                              message="temperature must be >= 0 (0 = greedy), not negative or NaN"),
            tf.debugging.assert_less(temperature, float("inf"), message="temperature must be finite"),
            tf.debugging.assert_greater_equal(top_k, 0, message="top_k must be >= 0 (0 = off)"),
            tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(tf.reduce_max(tf.concat([[0], ids.row_lengths()], 0)),
                                           tf.cast(MAX_PROMPT_TOKENS, tf.int64),
                                           message=f"a prompt is longer than {MAX_PROMPT_TOKENS} tokens"),
        ]
        with tf.control_dependencies(checks):
            padded, lengths = self.primer_ids(ids)
            # Nothing is sized from max_length before the checks pass.
            max_length = tf.identity(max_length)
        out, steps = (continue_fn or self.continue_ids)(padded, lengths, max_length, temperature, top_k, top_p,
                                                         seed)
        text = vocab_lib.continuation_after(prompts, self.decode(out[:, :steps]), self.level)
        is_text = tf.logical_and(tf.not_equal(out, vocab_lib.PAD_ID), tf.not_equal(out, vocab_lib.EOS_ID))
        lengths = tf.reduce_sum(tf.cast(is_text, tf.int32), axis=1)
        return {"text": text, "tokens": out, "lengths": lengths}

    def primer_ids(self, ids):
        """Ragged prompt ids -> `continue_ids`'s inputs: `[EOS] + ids` per row, right-padded, and the row lengths."""
        eos = tf.fill([ids.nrows(out_type=tf.int32), 1], vocab_lib.EOS_ID)
        primed = tf.concat([eos, ids], axis=1)
        return primed.to_tensor(vocab_lib.PAD_ID), tf.cast(primed.row_lengths(), tf.int32)

    def continue_ids(self, ids, lengths, max_length, temperature, top_k, top_p, seed, unroll=DECODE_UNROLL,
                     shards=DECODE_SHARDS):
        """The numeric part of `generate`: prime on prompt ids, then the generation loop.

        Only dense tensors and no string ops, so XLA can compile it
        (`tf.function(..., jit_compile=True)`); shapes are fixed by the batch
        size and `max_length`.

        Args:
            ids: int32 `[batch, T]`, each row `[EOS] + prompt ids`, right-padded.
            lengths: int32 `[batch]`, the real length of each row.
            max_length, temperature, top_k, top_p, seed: as in `generate`.
            unroll: generation steps per `tf.while_loop` iteration (the same
                tokens for any value). The default amortises the loop's own
                per-iteration cost in the TensorFlow executor over several
                tokens; XLA has no such cost, so its path uses 1, which
                compiles faster.
            shards: a batch of `DECODE_SHARD_MIN_ROWS` rows or more runs as
                this many independent loops over slices of its rows, which
                the executor runs side by side on the cores (the same tokens
                for any value). XLA runs one loop at a time, so its path
                uses 1.

        Returns:
            `(tokens, steps)`: int32 `[batch, max_length]` (pad after each
            row's end) and the number of positions the loop ran.
        """
        batch = tf.shape(ids)[0]

        def picker(strategy, rows):
            """The token picker of `strategy`; `rows=(start, batch)` for a shard (see `gumbel_argmax`)."""
            def greedy(logits, i):
                return tf.argmax(logits, axis=-1, output_type=tf.int32)

            def sample(logits, i):
                return sampling_lib.gumbel_argmax(sampling_lib.scale(logits, temperature), _step_seed(seed, i), rows)

            def sample_filtered(logits, i):
                return sampling_lib.sample_next(logits, temperature, top_k, top_p, seed=_step_seed(seed, i), rows=rows)

            return {"greedy": greedy, "sample": sample, "sample_filtered": sample_filtered}[strategy]

        filtered = tf.logical_or(top_k > 0, top_p < 1.0)

        def run(per_gate, shards):
            # The weights are laid out once per call, for the prompt and the loop alike.
            decoder = self._decoder(per_gate)
            if shards == 1:  # no slicing: XLA needs the static shapes
                parts = [(0, *self.prime(ids, lengths, unroll=unroll, decoder=decoder))]
            else:
                parts = []
                for start, end in _shard_bounds(batch, shards):
                    part_lengths = lengths[start:end]
                    # Each shard primes only as far as its own longest prompt (an empty shard: not at all).
                    width = tf.reduce_max(tf.concat([[0], part_lengths], 0))
                    primed = self.prime(ids[start:end, :width], part_lengths, unroll=unroll, decoder=decoder)
                    parts.append((start, *primed))

            def decode(strategy):
                # Sampled rows of a shard draw the noise of their rows of the whole batch.
                outs = [self._decode(logits, states, max_length,
                                     picker(strategy, None if shards == 1 else (start, batch)), decoder, unroll=unroll)
                        for start, logits, states in parts]
                if len(outs) == 1:
                    return outs[0]
                return tf.concat([o[0] for o in outs], 0), tf.reduce_max(tf.stack([o[1] for o in outs]))

            # The strategy is chosen once, outside the loop: each loop body
            # holds only the ops of its own strategy and layout.
            return tf.cond(
                temperature > 0.0,
                lambda: tf.cond(filtered, lambda: decode("sample_filtered"), lambda: decode("sample")),
                lambda: decode("greedy"))

        if not self._one_hot_lstm:  # the gate layout only concerns a one-hot first LSTM
            return run(False, shards)
        # The gate layout (see `_decoder`) is chosen once, from the batch size.
        return tf.cond(batch > 1, lambda: run(True, shards), lambda: run(False, 1))

    def score(self, texts):
        """Log-likelihood (nats) and bits per token of each text under the model.

        Each text is scored as `[EOS] + tokens -> tokens + [EOS]`, exactly
        like training in lines mode.

        Returns:
            A dict: `log_likelihood` float32 `[batch]` (sum over tokens,
            natural log), `bits_per_char` float32 `[batch]` (per token,
            including the final EOS; "char" for the char level), and
            `num_tokens` int32 `[batch]`.
        """
        ids = self.encode(tf.convert_to_tensor(texts, tf.string))
        batch = ids.nrows(out_type=tf.int32)
        eos = tf.fill([batch, 1], vocab_lib.EOS_ID)
        inputs = tf.concat([eos, ids], axis=1).to_tensor(vocab_lib.PAD_ID)
        targets = tf.concat([ids, eos], axis=1).to_tensor(vocab_lib.PAD_ID)
        logits = self._keras.model(inputs, training=False)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        real = tf.cast(tf.not_equal(targets, vocab_lib.PAD_ID), tf.float32)
        log_likelihood = -tf.reduce_sum(nll * real, axis=1)
        count = tf.reduce_sum(real, axis=1)
        bits = -log_likelihood / count / tf.math.log(2.0)
        return {"log_likelihood": log_likelihood, "bits_per_char": bits,
                "num_tokens": tf.cast(count, tf.int32)}


def _step_of(decoder):
    """`_decoder`'s `(project, cells, head)` as one step: tokens `[batch]` -> banned logits, new states."""
    project, cells, head = decoder

    def step(tokens, states):
        x, new_states = cells(project(tokens), states)
        return head(x), new_states

    return step


def _shard_bounds(batch, shards):
    """`shards` row ranges `(start, end)` that split a batch of `batch` rows.

    Near-equal slices from `DECODE_SHARD_MIN_ROWS` rows up; below that, the
    first shard holds every row and the others are empty (their loops run
    no steps).
    """
    split = batch >= DECODE_SHARD_MIN_ROWS
    bounds = [tf.where(split, batch * k // shards, batch if k else 0) for k in range(shards + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _step_seed(seed, i):
    """The `[2]` seed of token `i`: one independent stateless stream per position."""
    return tf.stack([seed, tf.cast(i, tf.int64)])


def assertion_message(error):
    """The human message of a failed in-graph `tf.debugging.assert_*`, else the first line."""
    found = re.search(r"assertion failed: \[([^\]]+)\]", error.message)
    return found.group(1) if found else error.message.strip().splitlines()[0]


_GENERATE_SIGNATURE = (
    tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
    tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int64))
_CACHE_ATTR = "_keras_textgen_generators"


def get_generator(model, vocab):
    """The cached `TextGenerator` of `model`, with its traced functions.

    `gen.generate_fn` is `generate` as one `tf.function` (the graph the
    SavedModel exports); `gen.generate_fn_xla` is the same with the numeric
    part (`continue_ids`) compiled by XLA. The cache is an attribute of the
    model (set past Keras's attribute tracking, so `model.save` ignores it):
    it goes when the model goes. A module-level `WeakKeyDictionary` would
    not free it, since each value holds the model's layers and variables.
    """
    per_model = model.__dict__.get(_CACHE_ATTR)
    if per_model is None:
        per_model = {}
        object.__setattr__(model, _CACHE_ATTR, per_model)
    key = tuple(vocab.get_vocabulary())
    if key not in per_model:
        gen = TextGenerator(model, vocab)
        # autograph=False: the code uses tf.cond / tf.while_loop itself, and
        # AutoGraph's source conversion was 3/4 of the tracing time (6.1 s -> 1.5 s).
        gen.generate_fn = tf.function(gen.generate, input_signature=_GENERATE_SIGNATURE, autograph=False)
        continue_xla = tf.function(functools.partial(gen.continue_ids, unroll=1, shards=1), jit_compile=True,
                                   autograph=False)
        gen.generate_fn_xla = tf.function(lambda *args: gen.generate(*args, continue_fn=continue_xla),
                                          input_signature=_GENERATE_SIGNATURE, autograph=False)
        per_model[key] = gen
    return per_model[key]


def generate(model, vocab, prompts, max_length=100, temperature=1.0, top_k=0, top_p=1.0, seed=None,
             sampling=None, jit_compile=False):
    """Generates a continuation of each prompt with a trained model.

    Args:
        model: the Keras model (from `build_model`).
        vocab: its `Vocabulary`.
        prompts: a string, or a list of strings (one batch).
        max_length: most tokens to generate per prompt (stops earlier at EOS).
        temperature: 0 for greedy decoding, otherwise the softmax temperature.
        top_k: sample only among the k most likely tokens (0 = off).
        top_p: nucleus sampling threshold in (0, 1] (1 = off).
        seed: an int for reproducible text; `None` draws a fresh seed.
        sampling: optionally a `keras_textgen.sampling.Sampling` (e.g.
            `ktg.TopK(10)`), which sets
            `temperature`, `top_k` and `top_p` instead.
        jit_compile: compile the generation loop with XLA: 1.6-2x faster for
            one prompt on a 2-core CPU (for 16 prompts or more, no faster
            than the default graph's two loops side by side), after a
            compilation of a few seconds for each new batch size and
            `max_length`. Greedy text is the same as without it
            (unless float rounding decides a near-tie). Sampling draws from
            the same distribution but from XLA's own random stream, so a
            seed gives other text than without XLA or from the SavedModel
            (which never uses XLA, so any TensorFlow Serving can run it).

    Returns:
        The continuation (str) for a single prompt, or a list of str:
        `prompt + continuation` is the text (word level adds the space
        between them where one is needed).

    Example:

    >>> generate(model, vocab, ["ROMEO:", "JULIET:"], max_length=50, temperature=0.8, top_k=20, seed=7)
    ['...', '...']
    """
    if sampling is not None:
        temperature, top_k, top_p = sampling.temperature, sampling.top_k, sampling.top_p
    gen = get_generator(model, vocab)
    return run_generate_fn(gen.generate_fn_xla if jit_compile else gen.generate_fn, prompts, max_length,
                           temperature, top_k, top_p, seed)


def run_generate_fn(generate_fn, prompts, max_length, temperature, top_k, top_p, seed):
    """Checks a request, runs `generate_fn` (the traced loop, or a loaded SavedModel's) and decodes its text.

    `generate_fn` takes `(prompt, max_length, temperature, top_k, top_p,
    seed)` as tensors, positionally, and returns a dict with `text`. Returns a str for a single prompt, else a list of str.
    """
    sampling_lib.check_sampling_args(temperature, top_k, top_p)
    if max_length is None or int(max_length) != max_length or not 0 < int(max_length) <= MAX_GENERATE_TOKENS:
        raise errors.ConfigError(f"max_length must be an integer in [1, {MAX_GENERATE_TOKENS}], got {max_length}")
    single = isinstance(prompts, str)
    prompt_list = [prompts] if single else list(prompts)
    if not prompt_list or not all(isinstance(p, str) for p in prompt_list):
        raise errors.ConfigError("prompts must be a string or a non-empty list of strings")
    broken = [i for i, p in enumerate(prompt_list) if not vocab_lib.is_unicode_text(p)]
    if broken:
        raise errors.ConfigError(f"prompt {broken[0] + 1} is not Unicode text: it holds a lone surrogate "
                                 f"(undecodable bytes?): {prompt_list[broken[0]]!r}")
    if seed is None:
        seed = random.SystemRandom().randrange(2**62)
    try:
        out = generate_fn(tf.constant(prompt_list), tf.constant(int(max_length), tf.int32),
                          tf.constant(float(temperature), tf.float32), tf.constant(int(top_k), tf.int32),
                          tf.constant(float(top_p), tf.float32), tf.constant(int(seed), tf.int64))
    except tf.errors.InvalidArgumentError as e:
        raise errors.ConfigError(assertion_message(e)) from None
    texts = [t.decode("utf-8", errors="replace") for t in out["text"].numpy()]
    return texts[0] if single else texts
