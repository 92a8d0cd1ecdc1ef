"""`TrainConfig`, the settings of a training run, importable without TensorFlow.

The `keras-textgen` CLI reads its flags' defaults from here before TensorFlow
loads (so `--help` and argument errors are instant); `keras_textgen.training`
re-exports it. Keep this module free of TensorFlow, Keras and NumPy imports.
"""

import dataclasses
import math

from keras_textgen import errors
from keras_textgen import threads

# The widest lines-mode example in tokens (`keras_textgen.data` uses the same value).
DEFAULT_MAX_LENGTH = 256


@dataclasses.dataclass
class TrainConfig:
    """Everything `train` needs; the CLI flags map one to one onto these fields."""

    corpus: str = "python-docs"
    level: str = "char"
    mode: str = None
    column: str = None
    header: bool = None  # CSV/TSV: first row names the columns; None = detected (keras_textgen.corpus.load)
    data_dir: str = None
    manual_dir: str = None
    epochs: int = 5
    steps_per_epoch: int = None
    validation_steps: int = None
    batch_size: int = 64
    seq_len: int = 100
    max_line_length: int = DEFAULT_MAX_LENGTH
    units: int = 256
    layers: int = 1
    cell: str = "lstm"
    embedding_dim: int = None
    dropout: float = 0.0
    learning_rate: float = 5e-3
    max_tokens: int = None
    min_frequency: int = 1
    lowercase: bool = False
    seed: int = None
    backup_every: int = 50
    sample_prompts: tuple = ("",)
    sample_length: int = 120
    strategy: str = None
    force: bool = False
    deterministic: bool = False
    intra_op_threads: object = threads.AUTO  # or an int >= 0; see keras_textgen.threads
    steps_per_execution: int = None  # None: automatic (`steps_per_execution_for`); 1 under a strategy

    def validate(self):
        from keras_textgen import vocab as vocab_lib
        from keras_textgen.training import STRATEGIES, check_steps_per_execution

        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "seq_len": self.seq_len,
                    "units": self.units, "layers": self.layers, "backup_every": self.backup_every,
                    "max_line_length": self.max_line_length, "sample_length": self.sample_length}
        for name in ("steps_per_epoch", "validation_steps", "embedding_dim", "max_tokens", "steps_per_execution"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise errors.ConfigError(f"{name} must be a positive integer, got {value!r}")
        broken = [p for p in self.sample_prompts if not isinstance(p, str) or not vocab_lib.is_unicode_text(p)]
        if broken:
            raise errors.ConfigError(f"sample prompt {broken[0]!r} is not Unicode text (a lone surrogate: "
                                     f"undecodable bytes?)")
        if self.max_line_length < 2:
            raise errors.ConfigError(f"max_line_length must be at least 2 (a token and its EOS), "
                                     f"got {self.max_line_length}")
        if self.level not in ("char", "word"):
            raise errors.ConfigError(f"level must be 'char' or 'word', got {self.level!r}")
        if self.mode not in (None, "lines", "chunks"):
            raise errors.ConfigError(f"mode must be 'lines' or 'chunks', got {self.mode!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise errors.ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise errors.ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.min_frequency < 1:
            raise errors.ConfigError(f"min_frequency must be >= 1, got {self.min_frequency!r}")
        if self.strategy not in (None, "default") + STRATEGIES:
            raise errors.ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.deterministic and self.seed is None:
            raise errors.ConfigError("deterministic training needs a seed (--seed)")
        threads.resolve(self.intra_op_threads)
        if self.steps_per_execution is not None:
            check_steps_per_execution(self.steps_per_execution, {"steps_per_epoch": self.steps_per_epoch,
                                                                 "validation_steps": self.validation_steps})
