import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_textgen as ktg
from keras_textgen import errors, sampling
from keras_textgen import decoding
from keras_textgen.generation import get_generator
from keras_textgen.vocab import EOS_ID, OOV_ID, PAD_ID


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["graph", "xla"])
@pytest.mark.parametrize("variant", ["one-hot lstm", "two-layer lstm", "embedding gru"])
def test_greedy_matches_rerunning_the_whole_prefix(vocab, tiny_model, variant, jit_compile):
    """The state-carrying loop gives exactly what the lesson's slow prefix re-run gives."""
    if variant == "two-layer lstm":
        model = tiny_model
    else:
        model = ktg.build_model(vocab, units=12, layers=1, cell=variant.split()[1],
                                embedding_dim=6 if "embedding" in variant else None)
        model.layers[-1].bias.assign(np.linspace(-1, 1, vocab.size))  # a non-trivial, deterministic head
    _check_greedy_against_rerun(model, vocab, jit_compile)


def _check_greedy_against_rerun(tiny_model, vocab, jit_compile=False):
    """One prompt alone and the same prompt in a batch against the re-run."""
    prompt = "the ca"
    fast = ktg.generate(tiny_model, vocab, prompt, max_length=25, temperature=0, jit_compile=jit_compile)
    in_batch = ktg.generate(tiny_model, vocab, ["a dog", prompt, ""], max_length=25, temperature=0,
                            jit_compile=jit_compile)[1]
    assert fast == in_batch
    # The re-run, in one call: a causal model's logits at position t of the whole text are what a call on
    # its first t + 1 tokens gives, so each generated token must be the argmax after the tokens before it.
    prefix = [EOS_ID] + vocab.encode(prompt).numpy().tolist()
    generated = vocab.encode(fast).numpy().tolist()
    logits = tiny_model(np.array([prefix + generated])).numpy()[0, len(prefix) - 1:]
    logits[:, [PAD_ID, OOV_ID]] = -np.inf
    slow = [int(i) for i in logits.argmax(axis=-1)]
    expected = generated if len(generated) == 25 else generated + [EOS_ID]  # it stops at EOS or at max_length
    assert slow[: len(expected)] == expected, (fast, vocab.decode([t for t in slow if t != EOS_ID]).numpy())


def _keras_cells_step(model, tokens, states):
    """One step of the model's own Keras layers: `TokenEncoding`, each `LSTMCell`/`GRUCell`, `Dense`."""
    x, new_states = model.get_layer("token_encoding")(tokens), []
    for layer in [layer for layer in model.layers if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))]:
        n = len(layer.cell.state_size) if isinstance(layer.cell.state_size, (list, tuple)) else 1
        x, layer_states = layer.cell(x, states[:n], training=False)
        states = states[n:]
        new_states.extend(layer_states if isinstance(layer_states, (list, tuple)) else [layer_states])
    return model.layers[-1](x), new_states


@pytest.mark.parametrize("banned", [False, True], ids=["TextGenerator.step", "the generation loop's step"])
@pytest.mark.parametrize("variant", ["two-layer lstm", "embedding lstm", "embedding gru"])
def test_decoder_step_equals_the_keras_cells(vocab, tiny_model, variant, banned):
    """`step` and the generation loop's (banned) step are the Keras cells' step.

    Random states of unit scale make every gate matter (greedy text from a
    barely trained model can hide a swapped gate behind the head's bias).
    """
    model = tiny_model if variant == "two-layer lstm" else _embedding_model(vocab, variant.split()[1])
    gen = get_generator(model, vocab)
    rng = np.random.default_rng(0)
    tokens = tf.constant([PAD_ID, EOS_ID, 5, vocab.size - 1, 7], tf.int32)
    states = [tf.constant(rng.normal(size=s.shape), tf.float32) for s in gen.initial_state(5)]
    want_logits, want_states = _keras_cells_step(model, tokens, states)
    got_logits, got_states = gen.decoder(banned=banned).step(tokens, states) if banned else gen.step(tokens, states)
    assert len(got_states) == len(want_states) == (4 if variant == "two-layer lstm" else len(states))
    real = [i for i in range(vocab.size) if i not in (PAD_ID, OOV_ID)]
    np.testing.assert_allclose(tf.gather(got_logits, real, axis=1), tf.gather(want_logits, real, axis=1),
                               rtol=1e-5, atol=1e-5)
    banned_logits = tf.gather(got_logits, [PAD_ID, OOV_ID], axis=1).numpy()
    if banned:
        assert np.isneginf(banned_logits).all()
    else:
        np.testing.assert_allclose(banned_logits, tf.gather(want_logits, [PAD_ID, OOV_ID], axis=1), rtol=1e-5,
                                   atol=1e-5)
    for got, want in zip(got_states, want_states):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _embedding_model(vocab, cell):
    model = ktg.build_model(vocab, units=12, layers=1, cell=cell, embedding_dim=6)
    model.layers[-1].bias.assign(np.linspace(-1, 1, vocab.size))
    return model


@pytest.mark.parametrize("unroll", [1, 4])
@pytest.mark.parametrize("variant", ["two-layer lstm", "embedding gru"])
def test_prime_gives_the_keras_model_output_at_each_rows_last_prompt_token(vocab, tiny_model, variant, unroll):
    """Priming a right-padded batch equals the Keras model on each row alone, up to its own length.

    Rows of 1 to 10 ids (EOS included) in one batch of width 10: each row's state must
    stop at its own end (the pad positions after it change nothing), and
    steps past the width, which the unrolled loop runs, must not count.
    """
    model = _embedding_model(vocab, "gru") if "gru" in variant else tiny_model
    gen = get_generator(model, vocab)
    decoder = gen.decoder(banned=True)
    prompts = ["the cat s", "a", "", "dog ran", "ab"]
    padded, lengths = gen.primer_ids(gen.encode(tf.constant(prompts)))
    assert padded.shape == (5, 10)
    logits, states = decoding.prime(decoder, padded, lengths, unroll=unroll)
    real = [i for i in range(vocab.size) if i not in (PAD_ID, OOV_ID)]
    assert np.isneginf(tf.gather(logits, [PAD_ID, OOV_ID], axis=1).numpy()).all()
    for row, prompt in enumerate(prompts):
        ids = np.array([[EOS_ID] + vocab.encode(prompt).numpy().tolist()])
        want = model(ids).numpy()[0, -1]
        np.testing.assert_allclose(tf.gather(logits[row], real), want[real], rtol=1e-5, atol=1e-5)
    # Padding the same rows further (a wider batch) leaves the result unchanged.
    wider = tf.pad(padded, [[0, 0], [0, 3]])
    logits_wider, states_wider = decoding.prime(decoder, wider, lengths, unroll=unroll)
    np.testing.assert_allclose(logits_wider, logits, rtol=1e-6, atol=1e-6)
    for got, want in zip(states_wider, states):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_batch_of_prompts_equals_one_by_one_for_greedy(vocab, tiny_model):
    prompts = ["the cat", "", "a dog ran in the"]
    batch = ktg.generate(tiny_model, vocab, prompts, max_length=30, temperature=0)
    single = [ktg.generate(tiny_model, vocab, p, max_length=30, temperature=0) for p in prompts]
    assert batch == single


def test_seed_reproducibility(vocab, tiny_model):
    kwargs = dict(max_length=40, temperature=1.5, top_k=8, seed=11)
    a = ktg.generate(tiny_model, vocab, ["the", "a"], **kwargs)
    b = ktg.generate(tiny_model, vocab, ["the", "a"], **kwargs)
    c = ktg.generate(tiny_model, vocab, ["the", "a"], **{**kwargs, "seed": 12})
    assert a == b
    assert a != c


def test_xla_greedy_text_equals_the_graph_and_xla_sampling_is_seeded(vocab, tiny_model):
    prompts = ["the cat", "", "a dog ran in the"]
    greedy = ktg.generate(tiny_model, vocab, prompts, max_length=60, temperature=0)
    assert ktg.generate(tiny_model, vocab, prompts, max_length=60, temperature=0, jit_compile=True) == greedy
    kwargs = dict(max_length=60, temperature=0.8, top_k=5, top_p=0.9, jit_compile=True)
    a = ktg.generate(tiny_model, vocab, prompts, seed=4, **kwargs)
    assert ktg.generate(tiny_model, vocab, prompts, seed=4, **kwargs) == a
    assert ktg.generate(tiny_model, vocab, prompts, seed=5, **kwargs) != a


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_sampling_follows_the_softmax(jit_compile):
    """Gumbel-max draws: frequencies match softmax(logits / T); banned ids never come out."""
    logits = tf.constant([[0.0, 0.0, 0.5, 1.0, 2.0, -1.0]] * 20000)

    def draw(logits):
        return sampling.sample_next(logits, temperature=2.0, seed=tf.constant([5, 6], tf.int64))

    ids = tf.function(draw, jit_compile=jit_compile)(logits).numpy()
    freq = np.bincount(ids, minlength=6) / len(ids)
    expected = np.exp(np.array([-np.inf, -np.inf, 0.5, 1.0, 2.0, -1.0]) / 2.0)
    expected /= expected.sum()
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_oov_and_empty_prompts_do_not_crash(vocab, tiny_model):
    prompts = ["€€€ ☃", "", "the cat"]
    out = ktg.generate(tiny_model, vocab, prompts, max_length=10, seed=1)
    assert len(out) == 3 and "[UNK]" not in "".join(out)
    tokens = get_generator(tiny_model, vocab).generate_fn(
        tf.constant(prompts), tf.constant(10), tf.constant(1.0), tf.constant(0), tf.constant(1.0),
        tf.constant(1, tf.int64))["tokens"].numpy()
    assert OOV_ID not in tokens and (tokens[:, 0] != PAD_ID).all()  # each row generated something
    # Unknown characters are OOV ids, which the model reads like any token (greedy: one answer).
    assert ktg.generate(tiny_model, vocab, "€€€ ☃", max_length=10, temperature=0) == \
        ktg.generate(tiny_model, vocab, "☃☃☃ €", max_length=10, temperature=0)


def test_stops_at_eos_and_reports_lengths(vocab, tiny_model):
    gen = get_generator(tiny_model, vocab)
    out = gen.generate_fn(tf.constant(["the cat", "a"]), tf.constant(300), tf.constant(1.0), tf.constant(0),
                          tf.constant(1.0), tf.constant(5, tf.int64))
    tokens = out["tokens"].numpy()
    assert tokens.shape == (2, 300)
    assert (tokens == EOS_ID).any(axis=1).all()  # both rows end well before 300 tokens
    for row, length, text in zip(tokens, out["lengths"].numpy(), out["text"].numpy()):
        if EOS_ID in row:  # nothing but padding after EOS
            end = list(row).index(EOS_ID)
            assert (row[end + 1:] == PAD_ID).all()
            assert length == end
        assert len(text.decode()) == length
        assert not set(row[:length]) & {PAD_ID, OOV_ID, EOS_ID}


def test_sampling_never_picks_pad_or_oov():
    logits = tf.constant([[50.0, 50.0, 0.0, 1.0, 2.0]] * 64)
    for temperature, top_k, top_p in [(0.0, 0, 1.0), (1.0, 0, 1.0), (5.0, 0, 1.0), (1.0, 2, 1.0), (1.0, 0, 0.5)]:
        ids = sampling.sample_next(logits, temperature, top_k, top_p, seed=[1, 2]).numpy()
        assert not set(ids.tolist()) & {PAD_ID, OOV_ID}


@pytest.mark.slow  # several generation graphs traced; `make test-fast` leaves it out
def test_unrolled_loop_gives_the_tokens_of_one_step_per_iteration(vocab, tiny_model):
    """Several steps per while-loop iteration change neither the tokens nor where rows stop.

    Sampling at a high temperature ends rows at EOS at different positions,
    and the lengths are not multiples of the unroll factors.
    """
    gen = get_generator(tiny_model, vocab)
    args = gen.primer_ids(gen.encode(tf.constant(["the cat", "a", "", "dog"])))
    runs = {unroll: tf.function(lambda *a, unroll=unroll: gen.continue_ids(*a, unroll=unroll), autograph=False)
            for unroll in (1, 3, 4)}
    for max_length in (1, 7, 40):
        for temperature in (0.0, 2.0):
            sampling_args = (tf.constant(max_length), tf.constant(temperature), tf.constant(0), tf.constant(1.0),
                             tf.constant(3, tf.int64))
            want, _ = runs[1](*args, *sampling_args)
            assert want.shape == (4, max_length)
            for unroll in (3, 4):
                np.testing.assert_array_equal(runs[unroll](*args, *sampling_args)[0], want)
        ended = (want.numpy() == EOS_ID).any(axis=1)
        assert max_length == 1 or 0 < ended.sum() < 4  # the sampled rows stop at different points




@pytest.mark.parametrize("settings, index", [((0.0, 0, 1.0), 0), ((0.0, 5, 0.9), 0), ((0.8, 0, 1.0), 1),
                                             ((0.8, 5, 1.0), 2), ((0.8, 0, 0.9), 2)])
def test_the_loop_picks_the_strategy_of_its_settings_and_each_picker_agrees_with_sample_next(settings, index):
    """`pick_index` chooses the plain picker the loop runs; each gives what `sample_next` gives.

    The loop's logits come with pad and OOV banned (the head's bias), which `sample_next` bans itself.
    """
    assert int(sampling.pick_index(*settings)) == index
    banned = tf.constant([[-np.inf, -np.inf] + [0.0] * 18])
    logits = tf.random.stateless_normal([64, 20], seed=[0, 1]) + banned
    seed = tf.constant([5, 6], tf.int64)
    np.testing.assert_array_equal(sampling.PICKS[index](logits, *settings, seed),
                                  sampling.sample_next(logits, *settings, seed=seed))


def test_top_k_one_and_tiny_top_p_are_greedy():
    logits = tf.random.stateless_normal([32, 20], seed=[0, 1])
    greedy = sampling.sample_next(logits, 0.0).numpy()
    assert (sampling.sample_next(logits, 1.0, top_k=1, seed=[3, 4]).numpy() == greedy).all()
    assert (sampling.sample_next(logits, 1.0, top_p=1e-6, seed=[3, 4]).numpy() == greedy).all()


def test_top_k_restricts_the_choice():
    logits = tf.constant([[0.0, 0.0, 0.0, 1.0, 1.1, 1.2, 5.0, 4.0]] * 500)
    ids = sampling.sample_next(logits, 10.0, top_k=2, seed=[0, 0]).numpy()
    assert set(ids.tolist()) == {6, 7}


def test_top_p_keeps_the_nucleus():
    probs = np.array([0, 0, 0.0001, 0.5, 0.3, 0.1999], np.float64)
    logits = tf.constant(np.log(np.where(probs > 0, probs, 1e-30))[None].repeat(500, 0), tf.float32)
    ids = sampling.sample_next(logits, 1.0, top_p=0.75, seed=[0, 0]).numpy()
    assert set(ids.tolist()) == {3, 4}


def test_sampling_classes_map_onto_generate(vocab, tiny_model):
    a = ktg.generate(tiny_model, vocab, "the", max_length=20, sampling=ktg.TopK(k=5, temperature=0.7), seed=3)
    b = ktg.generate(tiny_model, vocab, "the", max_length=20, temperature=0.7, top_k=5, seed=3)
    assert a == b
    assert ktg.generate(tiny_model, vocab, "the", max_length=20, sampling=ktg.Greedy()) == \
        ktg.generate(tiny_model, vocab, "the", max_length=20, temperature=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"max_length": 0}, "max_length"),
    ({"max_length": -5}, "max_length"),
    ({"max_length": 10**9}, "max_length"),
])
def test_bad_generation_arguments(vocab, tiny_model, kwargs, message):
    with pytest.raises(errors.ConfigError, match=message):
        ktg.generate(tiny_model, vocab, "the", **kwargs)


def test_top_k_larger_than_vocabulary_is_plain_sampling(vocab, tiny_model):
    a = ktg.generate(tiny_model, vocab, "the", max_length=20, temperature=1.0, top_k=10_000, seed=4)
    b = ktg.generate(tiny_model, vocab, "the", max_length=20, temperature=1.0, top_k=0, seed=4)
    assert a == b


def test_prompt_longer_than_limit(vocab, tiny_model):
    from keras_textgen.generation import MAX_PROMPT_TOKENS

    with pytest.raises(errors.ConfigError, match="longer than"):
        ktg.generate(tiny_model, vocab, "a" * (MAX_PROMPT_TOKENS + 1), max_length=5)


def test_score_matches_keras_loss(vocab, tiny_model):
    gen = get_generator(tiny_model, vocab)
    text = "the cat sat"
    scored = gen.score(tf.constant([text]))
    ids = vocab.encode(text).numpy().tolist()
    x, y = np.array([[EOS_ID] + ids]), np.array([ids + [EOS_ID]])
    loss = tiny_model.evaluate(x, y, verbose=0)[0]
    assert float(scored["bits_per_char"][0]) == pytest.approx(loss / math.log(2), rel=1e-4)
    assert float(scored["log_likelihood"][0]) == pytest.approx(-loss * len(y[0]), rel=1e-4)


def test_a_model_used_for_generation_is_freed_after_del(vocab):
    """The traced generator is cached on the model, not in a module-level map that would keep it alive."""
    import gc
    import weakref

    model = ktg.build_model(vocab, units=8)
    ktg.generate(model, vocab, "the", max_length=3, temperature=0)
    assert ktg.generate(model, vocab, "the", max_length=3, temperature=0) is not None  # the cached path
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
