"""Defaults that fit the data: the model and optimizer settings `train` picks from the corpus's size.

A small corpus (titles, names, lyrics: tens or hundreds of thousands of
characters) trained for minutes memorises a wide, unregularised LSTM; a
large one needs the width. The rule below maps the number of training
tokens (characters, or words at word level) to the settings the benchmark
found best for that size within a few minutes of CPU (`bench/sizing.py`;
the measured table is in `docs/training.md`). Every setting a user gives
explicitly overrides the rule.
"""

import dataclasses
import typing


class Row(typing.NamedTuple):
    """One row of a size rule: the settings for a corpus of fewer than `below` training tokens."""

    below: float
    units: int
    layers: int
    dropout: float
    batch_size: int
    learning_rate: float  # the peak of the warm-up + cosine schedule
    recurrent_dropout: float  # for runs long for their corpus only (RECURRENT_DROPOUT_BUDGET_PER_TOKEN)
    budget_units: int  # the width under a budget shorter than WIDE_BUDGET
    budget_batch_size: int  # the batch size under a budget shorter than WIDE_BUDGET


# Character models, smallest first. Measured (bench/sizing.py, bench/HISTORY.md, docs/training.md) on 30k-1M
# characters: below ~200k a narrow LSTM that takes more steps in the budget beats a wider, more regularised one;
# from ~300k a wide LSTM with heavy dropout and a higher peak rate, given the steps to use its width (it trades
# steps for capacity). Both add recurrent dropout to runs long for their corpus (below). The last row is not
# measured here.
CHAR_RULE = (
    Row(200_000, units=128, layers=1, dropout=0.2, batch_size=32, learning_rate=5e-3, recurrent_dropout=0.25,
        budget_units=128, budget_batch_size=32),
    Row(3_000_000, units=512, layers=1, dropout=0.5, batch_size=32, learning_rate=1e-2, recurrent_dropout=0.25,
        budget_units=256, budget_batch_size=16),
    Row(float("inf"), units=512, layers=1, dropout=0.2, batch_size=64, learning_rate=5e-3, recurrent_dropout=0.0,
        budget_units=512, budget_batch_size=64),
)
# Word models: the vocabulary grows with the text and most words are rare.
WORD_RULE = (
    Row(200_000, units=256, layers=1, dropout=0.5, batch_size=32, learning_rate=5e-3, recurrent_dropout=0.0,
        budget_units=256, budget_batch_size=32),
    Row(2_000_000, units=256, layers=1, dropout=0.4, batch_size=64, learning_rate=5e-3, recurrent_dropout=0.0,
        budget_units=256, budget_batch_size=64),
    Row(float("inf"), units=512, layers=2, dropout=0.3, batch_size=128, learning_rate=5e-3, recurrent_dropout=0.0,
        budget_units=512, budget_batch_size=128),
)
# A budget of at least this (seconds), or none, trains the row's full width and batch; a shorter one its
# `budget_units` and `budget_batch_size`. The wide LSTM takes about three times the time per step, and how many
# steps a budget buys depends on the CPU: the narrower model gives up a few hundredths of a bit where the
# default 5 minutes hold enough steps of the wide one, and gains a fifth of a bit where they do not. Its smaller
# batch trades characters per second for more, noisier updates: the narrow model stops on a flat validation
# loss, short of data rather than of throughput (docs/training.md, "Width and the budget").
WIDE_BUDGET = 600
# A budget shorter than this (seconds) trains the first row's narrow model whatever the corpus's size: in
# a minute a wide LSTM takes too few steps to pass it (bench/HISTORY.md: 300k characters, 1 minute: LSTM 128
# 2.59-2.65 bits/char against LSTM 512 2.94-2.96; 2 minutes: LSTM 512 ahead, 2.30 against 2.39).
SHORT_BUDGET = 120
# A run whose budget holds many passes over the corpus (at least this many seconds per training token, or no
# budget at all) also gets its row's recurrent dropout (Keras's variational dropout of the state entering each
# gate). It trades the first part of a run for the end: it holds off the memorising, so it pays only where a
# run lasts long enough to memorise; with too few passes it only slows the learning. Budget per token stands
# in for the epochs a run will get, which the rule cannot know before it runs (the measurements on both sides
# of the threshold: docs/training.md, "Recurrent dropout for long runs").
RECURRENT_DROPOUT_BUDGET_PER_TOKEN = 2e-3
# AdamW's decoupled decay, on kernels and embeddings, not biases. Keras decays by lr * wd per step: 0.01 at
# a 5e-3 peak is nanoGPT's 0.1 at 6e-4 per step; 0.1 here held the weights back (docs/training.md).
WEIGHT_DECAY = 0.01
LEARNING_RATE = 5e-3  # the peak of the warm-up + cosine schedule, unless the row says otherwise
WORD_EMBEDDING_DIM = 128
EMBEDDING_ABOVE = 512  # ids: a wider vocabulary gets an embedding instead of one-hot inputs
WORD_MAX_TOKENS = 20_000


@dataclasses.dataclass
class Choice:
    """The settings picked for a corpus; `None` fields keep the model's own default."""

    units: int
    layers: int
    dropout: float
    batch_size: int
    recurrent_dropout: float = 0.0
    weight_decay: float = WEIGHT_DECAY
    learning_rate: float = LEARNING_RATE
    embedding_dim: int = None
    min_frequency: int = None
    max_tokens: int = None


def vocabulary_settings(tokens, level):
    """`(min_frequency, max_tokens)` for a corpus of `tokens` training tokens: `(None, None)` for characters.

    Words seen once are most of a small corpus's vocabulary and cannot be
    learned from one example; they become the OOV id.
    """
    if level != "word":
        return None, None
    return (2 if tokens < 2_000_000 else 3), WORD_MAX_TOKENS


def choose(tokens, level="char", vocab_size=None, time_budget=None):
    """The settings for a corpus of `tokens` training tokens (see the module docstring).

    Args:
        tokens: characters (char level) or words (word level) in the training split.
        level: `"char"` or `"word"`.
        vocab_size: ids in the vocabulary, if known: a wide one gets an embedding.
        time_budget: the run's training budget in seconds, or `None` for none:
            under `SHORT_BUDGET` the rule's narrowest row is used, under
            `WIDE_BUDGET` the row's budget width and batch; from
            `RECURRENT_DROPOUT_BUDGET_PER_TOKEN` seconds per token, or with none,
            the row's recurrent dropout is added.

    Returns:
        A `Choice`.

    Example:

    >>> choose(276_494, time_budget=300)
    Choice(units=256, layers=1, dropout=0.5, batch_size=16, recurrent_dropout=0.0, weight_decay=0.01, ...)
    >>> choose(276_494, time_budget=None).units
    512
    >>> choose(276_494, time_budget=600).recurrent_dropout  # 2.2 ms per token: many epochs
    0.25
    """
    rule = WORD_RULE if level == "word" else CHAR_RULE
    short = time_budget is not None and time_budget < SHORT_BUDGET
    row = rule[0] if short else next(row for row in rule if tokens < row.below)
    narrow = time_budget is not None and time_budget < WIDE_BUDGET
    units, batch_size = (row.budget_units, row.budget_batch_size) if narrow else (row.units, row.batch_size)
    min_frequency, max_tokens = vocabulary_settings(tokens, level)
    long = time_budget is None or time_budget >= tokens * RECURRENT_DROPOUT_BUDGET_PER_TOKEN
    wide = level == "word" or (vocab_size is not None and vocab_size > EMBEDDING_ABOVE)
    return Choice(units=units, layers=row.layers, dropout=row.dropout, batch_size=batch_size,
                  learning_rate=row.learning_rate,
                  recurrent_dropout=row.recurrent_dropout if long else 0.0,
                  embedding_dim=WORD_EMBEDDING_DIM if wide else None,
                  min_frequency=min_frequency, max_tokens=max_tokens)
