"""Training callbacks: the live sampler and a bits-per-token logger."""

import keras

from keras_textgen import errors
from keras_textgen import generation
from keras_textgen import model as model_lib


class SampleCallback(keras.callbacks.LambdaCallback):
    """Prints generated text at the end of every `every` epochs, so you see the model learn.

    It is a `keras.callbacks.LambdaCallback` whose `on_epoch_end` generates
    one continuation per temperature (0 is greedy) for each prompt, with a
    fixed seed so samples from different epochs are comparable.

    Args:
        vocab: the model's `Vocabulary`.
        prompts: prompts to continue, at least one (for no samples, leave the callback out).
        temperatures: sampling temperatures; 0 means greedy.
        max_length: tokens to generate per sample.
        every: print every this many epochs.
        seed: the sampling seed.
        print_fn: where the lines go (default `print`).

    Example:

    >>> model.fit(train_ds, epochs=3,
    ...           callbacks=[SampleCallback(vocab, prompts=["ROMEO:"], temperatures=[0, 0.8])])
    """

    def __init__(self, vocab, prompts=("",), temperatures=(0.0, 0.8), max_length=120, every=1, seed=0,
                 print_fn=print):
        self.vocab = vocab
        self.prompts = list(prompts)
        if not self.prompts:  # else the first epoch's end would fail, after a whole epoch of training
            raise errors.ConfigError("SampleCallback needs at least one prompt; for no samples, leave it out")
        self.temperatures = list(temperatures)
        self.max_length = max_length
        self.every = every
        self.seed = seed
        self.print_fn = print_fn
        self.samples = []  # (epoch, prompt, temperature, text) of every sample printed
        super().__init__(on_epoch_end=self._on_epoch_end)

    def _on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        for temperature in self.temperatures:
            texts = generation.generate(self.model, self.vocab, self.prompts, max_length=self.max_length,
                                        temperature=temperature, seed=self.seed)
            for prompt, text in zip(self.prompts, texts):
                label = "greedy" if temperature == 0 else f"T={temperature:g}"
                self.samples.append((epoch + 1, prompt, temperature, text))
                self.print_fn(f"[sample epoch {epoch + 1} {label}] {prompt!r} -> {prompt + text!r}")


class BitsPerTokenLogger(keras.callbacks.Callback):
    """Adds `bits_per_token` (and `val_bits_per_token`) to the epoch logs.

    The loss is a cross-entropy in nats per real token; this divides it by
    ln 2. For characters, bits per token is bits per character.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            if f"{prefix}loss" in logs:
                logs[f"{prefix}bits_per_token"] = model_lib.bits(float(logs[f"{prefix}loss"]))
