"""Train a character LSTM on Tiny Shakespeare from TensorFlow Datasets, offline.

The TFDS builder reads `input.txt` from `--manual-dir` (default: $TINY_SHAKESPEARE_DIR,
else ../shared/data/tiny_shakespeare beside the clone) instead of downloading it; without
it, this script says so and exits with code 2.

    python pipelines/tiny_shakespeare.py --manual-dir ../shared/data/tiny_shakespeare
    python pipelines/tiny_shakespeare.py --quick
"""

import os
import sys

import keras_textgen as ktg
from _common import parser

p = parser(__doc__, epochs=10, steps=200)
p.add_argument("--manual-dir", default=os.environ.get("TINY_SHAKESPEARE_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "tiny_shakespeare"), help="input.txt's folder")
p.add_argument("--data-dir", default=None, help="TFDS data_dir (default ~/tensorflow_datasets)")
args = p.parse_args()
import keras  # after the flags, so --help answers without loading TensorFlow

ktg.configure_threads()  # before any TensorFlow op: one thread per op on small CPU-only machines
units, layers, steps = (16, 1, 3) if args.quick else (256, 2, args.steps_per_epoch)
epochs = 1 if args.quick else args.epochs
keras.utils.set_random_seed(1)

try:
    corpus = ktg.corpus.load("tfds:tiny_shakespeare", mode="chunks", manual_dir=args.manual_dir,
                             data_dir=args.data_dir)
except ktg.errors.KerasTextgenError as e:
    print(f"tiny_shakespeare: {e}", file=sys.stderr)  # the reason in one line; see --manual-dir above
    sys.exit(2)
vocab = ktg.Vocabulary.adapt(corpus.train, level="char")
train_ds = ktg.make_dataset(corpus.train, vocab, mode="chunks", batch_size=64, seq_len=100, repeat=True, seed=1)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode="chunks", batch_size=64, seq_len=100, shuffle=False)
model = ktg.build_model(vocab, units=units, layers=layers)

model.fit(
    train_ds,
    validation_data=val_ds,
    validation_steps=2 if args.quick else None,
    epochs=epochs,
    steps_per_epoch=steps,
    callbacks=[
        ktg.SampleCallback(vocab, prompts=["ROMEO:"], temperatures=[0.5, 1.0], max_length=120),
        # Stop when validation stops improving and keep the best epoch's weights, not the last.
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
    ],
)
print(ktg.generate(model, vocab, ["ROMEO:", "JULIET:"], max_length=300, temperature=0.8, top_k=20, seed=7))
if args.out:
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    vocab.save(os.path.join(args.out, "vocab.json"))
