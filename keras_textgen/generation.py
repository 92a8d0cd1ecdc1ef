"""State-carrying text generation in one `tf.function`.

The prompt is run once through the recurrent cells to prime their state;
after that every new token costs exactly one cell step (no re-run of the
prefix). Priming and generation are `tf.while_loop`s and sampling is stateless
(`keras_textgen.sampling`), so the whole loop is a graph that exports to a
SavedModel unchanged, and that XLA can compile (`jit_compile=True`).
"""

import functools
import random
import re

import tensorflow as tf

from keras_textgen import decoding
from keras_textgen import errors
from keras_textgen import model as model_lib
from keras_textgen import sampling as sampling_lib
from keras_textgen import vocab as vocab_lib

MAX_PROMPT_TOKENS = 2048
MAX_GENERATE_TOKENS = 100_000


class TextGenerator(tf.Module):
    """A trained model and its vocabulary as graph functions: step, generate, score.

    It reuses the model's own layers (so weights are shared, not copied):
    `TokenEncoding`, each recurrent layer's cell and the final `Dense`,
    stepped by `keras_textgen.decoding.Decoder`. This is also the module
    that `keras_textgen.export` saves.

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
        # The Keras layers sit in a plain tuple attribute set past tf.Module's
        # tracking: tracking the Keras model would make `tf.saved_model.save`
        # write a second copy of every variable, which the TF1 loader of
        # TensorFlow Serving restores while the functions read the first. The
        # module tracks the underlying tf.Variables instead.
        encoding = model.get_layer("token_encoding")
        recurrent = model_lib.recurrent_layers(model)
        object.__setattr__(self, "_parts", (encoding, recurrent, model.layers[-1]))
        object.__setattr__(self, "_model", model)
        self._one_hot = encoding.output_dim is None
        self.state_shapes = decoding.state_shapes(recurrent)
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

    def decoder(self, banned=False):
        """The model's `decoding.Decoder` (call inside the traced function: it lays out the weights)."""
        return decoding.Decoder(self._parts, self._one_hot, banned=banned)

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
        return decoding.zero_states(self.state_shapes, batch_size)

    def step(self, tokens, states):
        """One token per row -> next-token logits and the new states.

        Args:
            tokens: int32 `[batch]`.
            states: flat list of float32 `[batch, units]`, as `initial_state`.

        Returns:
            `(logits [batch, V], new_states)`: the model's logits (pad and OOV
            not banned), as the Keras model gives at that position.
        """
        return self.decoder().step(tokens, states)

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

    def continue_ids(self, ids, lengths, max_length, temperature, top_k, top_p, seed, unroll=decoding.DECODE_UNROLL):
        """The numeric part of `generate`: `decoding.continue_ids` with this model's decoder."""
        return decoding.continue_ids(self.decoder(banned=True), ids, lengths, max_length, temperature, top_k, top_p,
                                     seed, unroll=unroll)

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
        logits = self._model(inputs, training=False)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        real = tf.cast(tf.not_equal(targets, vocab_lib.PAD_ID), tf.float32)
        log_likelihood = -tf.reduce_sum(nll * real, axis=1)
        count = tf.reduce_sum(real, axis=1)
        bits = -log_likelihood / count / tf.math.log(2.0)
        return {"log_likelihood": log_likelihood, "bits_per_char": bits,
                "num_tokens": tf.cast(count, tf.int32)}


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
        continue_xla = tf.function(functools.partial(gen.continue_ids, unroll=1), jit_compile=True, autograph=False)
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
