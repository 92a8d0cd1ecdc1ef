"""The training loss: next-token cross-entropy in which every real target weighs the same."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_textgen")
class TokenCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on logits, summed over a batch's real targets, over a fixed count.

    Keras's default reduction (`"sum_over_batch_size"` with a mask) divides
    each batch's loss by that batch's own number of real targets. Lines are
    batched by length, so a batch of short lines (speaker names, titles)
    gives each of its targets several times the weight a target in a batch
    of long lines gets: training, early stopping and the best checkpoint
    then follow another figure than the loss per token the model is judged
    by (`keras_textgen.model.per_token_loss`, `keras-textgen evaluate`).
    This loss sums the batch's masked losses and divides by one fixed
    `targets_per_batch`, the training split's mean, so every target weighs
    alike and the logged loss stays close to the loss per token (exact for
    a split whose batches hold that mean). Padding is excluded by the
    model's Keras mask, as with Keras's own losses.

    Args:
        targets_per_batch: the mean number of real targets in a training
            batch of one replica (under `tf.distribute`, the global batch's
            over the replicas); it sets the loss's scale, not its minimum.
        name: the loss's name.
        dtype: the loss's dtype (Keras's default: the float type).

    Example:

    >>> model = keras_textgen.build_model(vocab, compile=False)
    >>> model.compile(optimizer="adam", loss=TokenCrossentropy(targets_per_batch=64 * 33.5))
    """

    def __init__(self, targets_per_batch, name="token_crossentropy", dtype=None):
        if not targets_per_batch > 0:
            raise ValueError(f"targets_per_batch must be > 0, got {targets_per_batch}")
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.targets_per_batch = float(targets_per_batch)

    def call(self, y_true, y_pred):
        losses = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        # Under tf.distribute Keras divides its mean reductions by the replicas and sums the replicas'
        # gradients (keras/src/losses/loss.py, scale_loss_for_distribution), but not a "sum" reduction:
        # divided here, each replica's loss is its share of the global batch's, as on one device.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return losses / (self.targets_per_batch * replicas)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)  # always "sum"
        return {**config, "targets_per_batch": self.targets_per_batch}


def next_token_loss(targets_per_batch=None):
    """The loss `build_model` compiles: `TokenCrossentropy(targets_per_batch)`, or for `None` Keras's
    `SparseCategoricalCrossentropy` on logits (each batch's mean over its real targets).

    A trained model directory's `config.json` holds its run's `targets_per_batch`:
    `next_token_loss(run_config.get("targets_per_batch"))` evaluates the way the run did.
    """
    if targets_per_batch:
        return TokenCrossentropy(targets_per_batch)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
