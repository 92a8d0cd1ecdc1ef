"""A reference on-device client: text generation from an exported `.tflite` with LiteRT.

It uses only NumPy and `ai_edge_litert` (the runtime apps ship; the old
`tf.lite.Interpreter` is deprecated), never TensorFlow: `pip install
ai-edge-litert numpy` and this package's files are enough on a device. It
reads like what an app does:

1. read the vocabulary from the model's `vocab` signature (one file to ship),
2. run `prime` once on `[EOS] + prompt ids` to get the LSTM states,
3. call `step` once per new token, sampling from its logits.

Signatures of the `.tflite` (pass inputs by name; LiteRT sorts them):

* `step`: `token` int32 `[batch, 1]`, `h_0`, `c_0`, ... float32
  `[batch, units]` -> `logits` float32 `[batch, V]` and the new states.
* `prime`: `tokens` int32 `[batch, T]` (right-padded with 0) and the states
  -> the same outputs, taken after each row's last real token.
* `vocab`: no inputs -> `vocab_json_utf8` uint8 `[N]`, the UTF-8 bytes of the
  vocabulary JSON (tokens, reserved ids, state names and sizes).
"""

import json
import os
import re

import numpy as np

from keras_textgen import errors
from keras_textgen import tokens as vocab_lib  # the reserved ids; keras_textgen.vocab would load TensorFlow

# tf.strings uses RE2, whose \w is ASCII-only; re.ASCII makes Python agree.
_WORDS = re.compile(vocab_lib.WORD_PATTERN, re.ASCII)


class LiteGenerator:
    """Generates text from a keras_textgen `.tflite` file.

    Args:
        path: the `.tflite` file written by `export_tflite`.
        num_threads: interpreter threads (1 is fastest for one LSTM step).

    Example:

    >>> gen = LiteGenerator("saved_models/python-docs.int8.tflite")
    >>> gen.generate("def ", max_length=80, temperature=0.8, top_k=20, seed=7)
    """

    def __init__(self, path, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.exists(path):
            raise errors.ArtifactError(f"TFLite model not found: {os.fspath(path)}")
        if os.path.isdir(path):
            raise errors.ArtifactError(f"{os.fspath(path)} is a directory, not a .tflite file")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._step = self.interpreter.get_signature_runner("step")
            self._prime = self.interpreter.get_signature_runner("prime")
            raw = self.interpreter.get_signature_runner("vocab")()["vocab_json_utf8"]
            self.meta = json.loads(bytes(raw.astype(np.uint8)).decode("utf-8"))
        except (ValueError, RuntimeError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise errors.ArtifactError(f"{path} is not a valid keras_textgen .tflite model ({e})") from None
        self.tokens = [vocab_lib.PAD_TOKEN, vocab_lib.OOV_TOKEN, vocab_lib.EOS_TOKEN] + self.meta["tokens"]
        self.ids = {t: i for i, t in enumerate(self.tokens) if i >= vocab_lib.EOS_ID}
        self.level = self.meta["level"]
        self.state_names = self.meta["states"]
        self.state_units = self.meta["state_units"]

    def encode(self, text):
        """A prompt -> token ids (unknown tokens -> OOV), as the model's vocabulary does."""
        if self.meta.get("lowercase"):
            text = text.lower()
        pieces = list(text) if self.level == "char" else _WORDS.findall(text)
        return [self.ids.get(p, vocab_lib.OOV_ID) for p in pieces]

    def decode(self, ids):
        pieces = [self.tokens[i] for i in ids if i > vocab_lib.EOS_ID]
        if self.level == "char":
            return "".join(pieces)
        return re.sub(r" ([^\w\s])", r"\1", " ".join(pieces), flags=re.ASCII)

    def initial_states(self, batch_size=1):
        return {n: np.zeros([batch_size, u], np.float32) for n, u in zip(self.state_names, self.state_units)}

    def prime(self, ids_batch):
        """Runs prompts (lists of ids, `[EOS]` already first) -> (logits `[batch, V]`, states)."""
        width = max(len(ids) for ids in ids_batch)
        tokens = np.zeros([len(ids_batch), width], np.int32)
        for row, ids in enumerate(ids_batch):
            tokens[row, :len(ids)] = ids
        out = self._prime(tokens=tokens, **self.initial_states(len(ids_batch)))
        return out["logits"], {n: out[n] for n in self.state_names}

    def step(self, tokens, states):
        """One token per row (`[batch]` ints) -> (logits `[batch, V]`, new states)."""
        out = self._step(token=np.asarray(tokens, np.int32).reshape(-1, 1), **states)
        return out["logits"], {n: out[n] for n in self.state_names}

    def bits_per_token(self, text):
        """Bits per token of `text` under the model, scored as in training: `[EOS]+ids -> ids+[EOS]`."""
        ids = self.encode(text) + [vocab_lib.EOS_ID]
        states = self.initial_states(1)
        logits, states = self.step([vocab_lib.EOS_ID], states)
        total = 0.0
        for i, target in enumerate(ids):
            row = logits[0].astype(np.float64)
            total += np.log(np.exp(row - row.max()).sum()) + row.max() - row[target]
            if i + 1 < len(ids):
                logits, states = self.step([target], states)
        return total / len(ids) / np.log(2.0)

    def generate(self, prompts, max_length=100, temperature=1.0, top_k=0, seed=None):
        """Continues each prompt; greedy at temperature 0; stops at EOS.

        Sampling uses NumPy's generator seeded with `seed`, so the same seed
        gives the same text here; it is not the TensorFlow sampler, so only
        greedy text is identical to the Keras and SavedModel outputs.
        """
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        rng = np.random.default_rng(seed)
        logits, states = self.prime([[vocab_lib.EOS_ID] + self.encode(p) for p in prompts])
        out = [[] for _ in prompts]
        done = np.zeros(len(prompts), bool)
        for _ in range(max_length):
            tokens = sample(logits, temperature, top_k, rng)
            for row, token in enumerate(tokens):
                if not done[row]:
                    if token == vocab_lib.EOS_ID:
                        done[row] = True
                    else:
                        out[row].append(int(token))
            if done.all():
                break
            logits, states = self.step(tokens, states)
        texts = [continuation_after(p, self.decode(ids), self.level) for p, ids in zip(prompts, out)]
        return texts[0] if single else texts


def continuation_after(prompt, text, level):
    """`keras_textgen.vocab.continuation_after` for one prompt: at word level, a space between two words."""
    if level != "char" and re.fullmatch(r"(?s).*\S", prompt) and re.match(r"\w", text, flags=re.ASCII):
        return " " + text
    return text


def sample(logits, temperature=1.0, top_k=0, rng=None):
    """NumPy twin of `keras_textgen.sampling.sample_next` (greedy, temperature, top-k)."""
    logits = np.array(logits, np.float64)
    logits[:, [vocab_lib.PAD_ID, vocab_lib.OOV_ID]] = -np.inf
    if temperature <= 0:
        return logits.argmax(axis=-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    rng = rng or np.random.default_rng()
    return np.array([rng.choice(len(p), p=p) for p in probs])
