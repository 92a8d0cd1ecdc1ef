"""Word-level generation (the lesson's follow-up exercise) on Python's documentation.

Words and punctuation marks are tokens; rare words fall back to OOV, which
generation never emits. An Embedding replaces the one-hot input (large vocabularies).

    python pipelines/word_level.py
    python pipelines/word_level.py --quick
"""

import math
import os

import keras_textgen as ktg
from _common import parser

args = parser(__doc__, epochs=5, steps=150).parse_args()
import keras  # after the flags, so --help answers without loading TensorFlow

ktg.configure_threads()  # before any TensorFlow op: one thread per op on small CPU-only machines
keras.utils.set_random_seed(1)

corpus = ktg.corpus.load("python-docs", mode="chunks")
vocab = ktg.Vocabulary.adapt(corpus.train, level="word", lowercase=True, max_tokens=5000, min_frequency=3)
train_ds = ktg.make_dataset(corpus.train, vocab, mode="chunks", batch_size=32, seq_len=40, repeat=True, seed=1)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode="chunks", batch_size=32, seq_len=40, shuffle=False)
model = ktg.build_model(vocab, units=16 if args.quick else 256, layers=1, embedding_dim=8 if args.quick else 128)

history = model.fit(
    train_ds,
    validation_data=val_ds,
    validation_steps=2 if args.quick else None,
    epochs=1 if args.quick else args.epochs,
    steps_per_epoch=3 if args.quick else args.steps_per_epoch,
    callbacks=[ktg.SampleCallback(vocab, prompts=["the function"], temperatures=[0.0, 0.8], max_length=30)],
)
print(f"validation perplexity: {math.exp(history.history['val_loss'][-1]):.1f}")
print(ktg.generate(model, vocab, ["the function", "a class"], max_length=40, temperature=0.7, seed=7))
if args.out:
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    vocab.save(os.path.join(args.out, "vocab.json"))
