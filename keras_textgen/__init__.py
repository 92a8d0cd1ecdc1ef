"""keras_textgen: generative recurrent text models from tf.data to Serving and TFLite.

The shape of every use is corpus -> vocabulary -> dataset -> Sequential
model -> `model.fit` -> generate:

```python
import keras_textgen as ktg

corpus = ktg.corpus.load("python-docs")
vocab = ktg.Vocabulary.adapt(corpus.train, level="char")
train_ds = ktg.make_dataset(corpus.train, vocab, mode=corpus.mode, batch_size=64)
val_ds = ktg.make_dataset(corpus.validation, vocab, mode=corpus.mode, shuffle=False)
model = ktg.build_model(vocab, units=256, layers=2)
model.fit(train_ds, validation_data=val_ds, epochs=5,
          callbacks=[ktg.SampleCallback(vocab, prompts=["def "])])
print(ktg.generate(model, vocab, ["def ", "The "], max_length=200, temperature=0.8, seed=7))
```
"""

__version__ = "0.1.0"

from keras_textgen import corpus
from keras_textgen import errors
from keras_textgen import sampling as samplers
from keras_textgen.artifacts import load_model_dir
from keras_textgen.callbacks import BitsPerTokenLogger
from keras_textgen.callbacks import SampleCallback
from keras_textgen.data import make_dataset
from keras_textgen.generation import TextGenerator
from keras_textgen.generation import generate
from keras_textgen.layers import TokenEncoding
from keras_textgen.model import build_model
from keras_textgen.sampling import GreedySampler
from keras_textgen.sampling import RandomSampler
from keras_textgen.sampling import TopKSampler
from keras_textgen.sampling import TopPSampler
from keras_textgen.training import TrainConfig
from keras_textgen.training import train
from keras_textgen.vocab import Vocabulary

__all__ = [
    "BitsPerTokenLogger", "GreedySampler", "RandomSampler", "SampleCallback", "TextGenerator", "TokenEncoding",
    "TopKSampler", "TopPSampler", "TrainConfig", "Vocabulary", "build_model", "corpus", "errors", "generate",
    "load_model_dir", "make_dataset", "samplers", "train",
]
