"""The lesson's own task: a character LSTM on AG News titles, one title per example.

TFDS downloads `ag_news_subset` on first use (about 11 MB). Without network,
prepare it once elsewhere and pass `--data-dir`; otherwise this script says so
and exits with code 2. `--quick` trains on a small local sample of titles instead.

    python pipelines/ag_news_titles.py --data-dir ~/tensorflow_datasets
    python pipelines/ag_news_titles.py --quick
"""

import os
import sys
import tempfile

import keras_textgen as ktg
from _common import parser

SAMPLE_TITLES = [
    "Stocks rally as oil prices fall", "New phone sets sales record", "Team wins title in overtime",
    "Storm hits coast, thousands evacuated", "Scientists find water on distant moon", "Markets slip on rate fears",
    "Election results expected tonight", "Chip maker posts record profit", "Star striker signs new contract",
    "Space agency delays rocket launch", "Oil giant reports quarterly loss", "Rain expected across the region",
]

p = parser(__doc__, epochs=5)
p.add_argument("--data-dir", default=None, help="TFDS data_dir holding a prepared ag_news_subset")
args = p.parse_args()
import keras  # after the flags, so --help answers without loading TensorFlow

ktg.configure_threads()  # before any TensorFlow op: one thread per op on small CPU-only machines
keras.utils.set_random_seed(1)

if args.quick:  # a local sample shaped like the real titles, so the smoke test runs offline
    sample = os.path.join(tempfile.mkdtemp(), "titles.txt")
    with open(sample, "w") as f:
        f.write("\n".join(SAMPLE_TITLES * 4))
    source = sample
else:
    source = "tfds:ag_news_subset:title"
try:
    corpus = ktg.corpus.load(source, mode="lines", data_dir=args.data_dir)
except ktg.errors.KerasTextgenError as e:
    print(f"ag_news_titles: {e}", file=sys.stderr)  # the reason in one line; see --data-dir above
    sys.exit(2)

counts = ktg.vocab.count(corpus.train, level="char")  # one pass: the vocabulary, and the titles' mean length
vocab = ktg.Vocabulary.from_counts(counts.tokens, level="char")
train_ds = ktg.make_dataset(corpus.train, vocab, mode="lines", batch_size=64, bucket=True, seed=1)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode="lines", batch_size=64, shuffle=False)
# Every character of every title weighs alike in the loss, whichever batch of lengths it lands in
# (docs/training.md): its scale is the mean title's targets, its characters and its end.
model = ktg.build_model(vocab, units=16 if args.quick else 256, layers=1,
                        targets_per_sequence=ktg.losses.targets_per_sequence(counts, mode="lines"))

model.fit(
    train_ds,
    validation_data=val_ds,
    epochs=1 if args.quick else args.epochs,
    steps_per_epoch=3 if args.quick else args.steps_per_epoch,
    callbacks=[ktg.SampleCallback(vocab, prompts=["Stocks", "Team"], temperatures=[0.0, 0.7], max_length=60)],
)
print(ktg.generate(model, vocab, ["Stocks", "Team", ""], max_length=80, temperature=0.7, seed=7))
if args.out:
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    vocab.save(os.path.join(args.out, "vocab.json"))
