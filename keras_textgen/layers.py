"""The one custom layer: token ids -> vectors in which padding is the zero vector."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_textgen")
class TokenEncoding(keras.layers.Layer):
    """Encodes int token ids as vectors, with the pad id (0) as the all-zero vector.

    This is what makes the following `keras.layers.Masking(mask_value=0.0)`
    really mask: a plain one-hot of pad id 0 is `[1, 0, 0, ...]`, which
    `Masking` does not recognise (the bug of the lesson notebook).

    Args:
        vocab_size: number of ids, the reserved ones included.
        output_dim: `None` for one-hot vectors of width `vocab_size - 1`
            (the pad column is dropped); an integer for a trainable embedding
            of that width whose pad row is forced to zero.

    Example:

    >>> layer = TokenEncoding(4)
    >>> layer(np.array([[0, 1, 3]])).numpy().tolist()
    [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    """

    def __init__(self, vocab_size, output_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.output_dim = None if output_dim is None else int(output_dim)
        if self.output_dim is not None:
            self.embedding = keras.layers.Embedding(self.vocab_size, self.output_dim, name="embedding")

    def build(self, input_shape):
        if self.output_dim is not None:
            self.embedding.build(input_shape)
        self.built = True

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        if self.output_dim is None:
            return ops.one_hot(ids, self.vocab_size, dtype=self.compute_dtype)[..., 1:]
        not_pad = ops.cast(ops.not_equal(ids, 0), self.compute_dtype)
        return self.embedding(ids) * ops.expand_dims(not_pad, -1)

    def compute_output_shape(self, input_shape):
        width = self.vocab_size - 1 if self.output_dim is None else self.output_dim
        return tuple(input_shape) + (width,)

    def get_config(self):
        config = super().get_config()
        config.update({"vocab_size": self.vocab_size, "output_dim": self.output_dim})
        return config
