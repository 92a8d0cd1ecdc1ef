"""Train a character LSTM on Python's own documentation (built in, works offline).

    python pipelines/python_docs.py            # a few minutes on 2 CPU cores
    python pipelines/python_docs.py --quick    # seconds, a smoke test
"""

import os

import keras_textgen as ktg
from _common import parser

args = parser(__doc__, epochs=6, steps=150).parse_args()
import keras  # after the flags, so --help answers without loading TensorFlow

ktg.configure_threads()  # before any TensorFlow op: one thread per op on small CPU-only machines
units, layers, steps = (16, 1, 3) if args.quick else (256, 1, args.steps_per_epoch)
epochs = 1 if args.quick else args.epochs
keras.utils.set_random_seed(1)

corpus = ktg.corpus.load("python-docs")                        # chunks of one long text
vocab = ktg.Vocabulary.adapt(corpus.train, level="char")
train_ds = ktg.make_dataset(corpus.train, vocab, mode=corpus.mode, batch_size=64, seq_len=100, repeat=True, seed=1)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode=corpus.mode, batch_size=64, seq_len=100, shuffle=False)
model = ktg.build_model(vocab, units=units, layers=layers)
model.summary()

model.fit(
    train_ds,
    validation_data=val_ds,
    validation_steps=2 if args.quick else None,
    epochs=epochs,
    steps_per_epoch=steps,
    callbacks=[
        ktg.SampleCallback(vocab, prompts=["def ", "The "], temperatures=[0.0, 0.8], max_length=80),
        # Stop when validation stops improving and keep the best epoch's weights, not the last.
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
    ],
)
print(ktg.generate(model, vocab, ["def ", "The "], max_length=200, temperature=0.5, seed=7))
if args.out:
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    vocab.save(os.path.join(args.out, "vocab.json"))
