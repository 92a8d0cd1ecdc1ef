"""The training loss: next-token cross-entropy in which every real target weighs the same."""

import keras
import tensorflow as tf

from keras_textgen.config import DEFAULT_MAX_LENGTH


@keras.saving.register_keras_serializable(package="keras_textgen")
class TokenCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on logits in which every real target weighs the same.

    Keras's default reduction (`"sum_over_batch_size"` with a mask) divides
    each batch's loss by that batch's own number of real targets. Lines are
    batched by length, so a batch of short lines (speaker names, titles)
    gives each of its targets several times the weight a target in a batch
    of long lines gets: training, early stopping and the best checkpoint
    then follow another figure than the loss per token the model is judged
    by (`keras_textgen.model.per_token_loss`, `keras-textgen evaluate`).
    This loss sums the batch's masked losses and divides by the batch's
    sequences times one fixed `targets_per_sequence`, the training split's
    mean. Every target of full batches then weighs alike, and the loss Keras
    logs (its mean over batches, weighted by their sequences) is the loss per
    token of any split whose sequences hold that mean on average: in chunks
    mode (every window but a text's last holds `seq_len` targets), and
    closely in lines mode. Padding is excluded by the model's Keras mask,
    as with Keras's own losses.

    Args:
        targets_per_sequence: the training split's mean number of real
            targets per sequence (`targets_per_sequence(counts, mode)` gives
            it from the vocabulary's token counts). It sets the loss's
            scale, not its minimum.
        name: the loss's name.
        dtype: the loss's dtype (Keras's default: the float type).

    Example:

    >>> model = keras_textgen.build_model(vocab, compile=False)
    >>> model.compile(optimizer="adam", loss=TokenCrossentropy(targets_per_sequence=33.5))
    """

    def __init__(self, targets_per_sequence, name="token_crossentropy", dtype=None):
        if not targets_per_sequence > 0:
            raise ValueError(f"targets_per_sequence must be > 0, got {targets_per_sequence}")
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.targets_per_sequence = float(targets_per_sequence)

    def call(self, y_true, y_pred):
        losses = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        sequences = tf.cast(tf.shape(y_true)[0], losses.dtype)
        # Under tf.distribute Keras divides its mean reductions by the replicas and sums the replicas'
        # gradients (keras/src/losses/loss.py, scale_loss_for_distribution), but not a "sum" reduction:
        # divided here, each replica's loss is its share of the global batch's, as on one device.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return losses / (self.targets_per_sequence * sequences * replicas)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)  # always "sum"
        return {**config, "targets_per_sequence": self.targets_per_sequence}


def next_token_loss(targets_per_sequence=None):
    """The loss `build_model` compiles: `TokenCrossentropy(targets_per_sequence)`, or for `None` Keras's
    `SparseCategoricalCrossentropy` on logits (each batch's mean over its real targets).

    A trained model directory's `config.json` holds its run's `targets_per_sequence`:
    `next_token_loss(run_config.get("targets_per_sequence"))` evaluates the way the run did.
    """
    if targets_per_sequence:
        return TokenCrossentropy(targets_per_sequence)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def targets_per_sequence(counts, mode="lines", seq_len=100, max_line_length=DEFAULT_MAX_LENGTH):
    """A split's mean number of real targets per sequence, `TokenCrossentropy`'s count, from its token counts.

    Chunks: `seq_len` per window. Lines: a line of n tokens has n + 1
    targets (its end included), at most `max_line_length`; the mean over
    lines, uncapped, is what the counts give (a line cut short only lowers
    the true mean).

    Args:
        counts: a `keras_textgen.vocab.Counts` of the training texts
            (`keras_textgen.vocab.count`), whose `total` tokens and `texts` it reads.
        mode, seq_len, max_line_length: as for `make_dataset` (`max_length`).

    Example:

    >>> counts = keras_textgen.vocab.count(["ab", "abcd"])
    >>> targets_per_sequence(counts)  # (3 + 5) / 2
    4.0
    """
    if mode == "chunks":
        return float(seq_len)
    return min((counts.total + counts.texts) / max(counts.texts, 1), max_line_length)
