"""`TrainConfig`, the settings of a training run, importable without TensorFlow.

The `keras-textgen` CLI reads its flags' defaults from here before TensorFlow
loads (so `--help` and argument errors are instant); `keras_textgen.training`
re-exports it. Keep this module free of TensorFlow, Keras and NumPy imports.
"""

import dataclasses
import math
import re

from keras_textgen import errors
from keras_textgen import threads

# The widest lines-mode example in tokens (`keras_textgen.data` uses the same value).
DEFAULT_MAX_LENGTH = 256


DEFAULT_TIME_BUDGET = 300.0  # seconds: a first run on a laptop ends by itself within minutes (docs/training.md)
AUTO_FIELDS = ("batch_size", "units", "layers", "embedding_dim", "dropout", "recurrent_dropout", "learning_rate",
               "weight_decay", "max_tokens", "min_frequency")
SCHEDULES = ("cosine", "constant")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text):
    """`"90s"`, `"10m"`, `"2h"`, `"1.5h"` or a bare number of seconds -> seconds (a float > 0).

    Raises:
        ConfigError: not a positive duration.

    Example:

    >>> parse_duration("10m")
    600.0
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise errors.ConfigError(f"expected a duration such as 90s, 10m or 2h, got {text!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if not (math.isfinite(seconds) and seconds > 0):
        raise errors.ConfigError(f"a time budget must be longer than 0 seconds, got {text!r}")
    return seconds


def format_duration(seconds):
    """Seconds -> e.g. '5m 0s', '2h 0m', '45s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds}s"


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
    memory_budget: float = None  # MB: text corpora up to this are read into memory; None: corpus.MEMORY_BUDGET
    epochs: int = 100  # an upper bound: early stopping or the time budget usually ends the run first
    steps_per_epoch: int = None
    validation_steps: int = None
    validate_every: int = None  # steps between evaluations; None: at each epoch's end
    patience: int = 5  # evaluations without a better validation loss before the run stops; 0: never
    time_budget: float = DEFAULT_TIME_BUDGET  # seconds of training; None: no budget
    lr_schedule: str = "cosine"  # or "constant"
    seq_len: int = 100
    max_line_length: int = DEFAULT_MAX_LENGTH
    cell: str = "lstm"
    # None: picked from the corpus's size (keras_textgen.sizing); a given value overrides the rule.
    batch_size: int = None
    units: int = None
    layers: int = None
    embedding_dim: int = None  # 0: one-hot inputs
    dropout: float = None
    recurrent_dropout: float = None
    learning_rate: float = None
    weight_decay: float = None  # AdamW's; 0: Adam
    max_tokens: int = None
    min_frequency: int = None
    lowercase: bool = False
    seed: int = None
    backup_every: int = 50
    sample_prompts: tuple = ("",)  # the samples printed after each epoch start with these; (): no samples
    sample_length: int = 120
    keep_generator: bool = True  # keep the traced generation loop in MODEL_DIR/generator/ (generator_cache)
    strategy: str = None
    force: bool = False
    deterministic: bool = False
    intra_op_threads: object = threads.AUTO  # or an int >= 0; see keras_textgen.threads
    steps_per_execution: int = None  # None: automatic (`steps_per_execution_for`); 1 under a strategy

    def validate(self):
        from keras_textgen import vocab as vocab_lib
        from keras_textgen.distribute import STRATEGIES
        from keras_textgen.steps import check_steps_per_execution

        positive = {"epochs": self.epochs, "seq_len": self.seq_len, "backup_every": self.backup_every,
                    "max_line_length": self.max_line_length, "sample_length": self.sample_length}
        for name in ("steps_per_epoch", "validation_steps", "max_tokens", "steps_per_execution", "validate_every",
                     "batch_size", "units", "layers", "min_frequency"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not _is_int(value) or value < 1:
                raise errors.ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("patience", "embedding_dim"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise errors.ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.time_budget is not None and not (_is_number(self.time_budget) and self.time_budget > 0):
            raise errors.ConfigError(f"time_budget must be a number of seconds > 0 (or None), got {self.time_budget!r}")
        if self.memory_budget is not None and not (_is_number(self.memory_budget) and self.memory_budget >= 0):
            raise errors.ConfigError(f"memory_budget must be a number of MB >= 0, got {self.memory_budget!r}")
        if self.weight_decay is not None and not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise errors.ConfigError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.lr_schedule not in SCHEDULES:
            raise errors.ConfigError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
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
        if self.learning_rate is not None and not (_is_number(self.learning_rate) and self.learning_rate > 0):
            raise errors.ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        for name in ("dropout", "recurrent_dropout"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0.0 <= value < 1.0):
                raise errors.ConfigError(f"{name} must be in [0, 1), got {value!r}")
        if self.strategy not in (None, "default") + STRATEGIES:
            raise errors.ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.deterministic and self.seed is None:
            raise errors.ConfigError("deterministic training needs a seed (--seed)")
        if self.deterministic and self.time_budget is not None:
            raise errors.ConfigError("deterministic training needs --time-budget none (a budget stops the run "
                                     "and anneals its learning rate by the clock)")
        threads.resolve(self.intra_op_threads)
        if self.steps_per_execution is not None:
            check_steps_per_execution(self.steps_per_execution, {"steps_per_epoch": self.steps_per_epoch,
                                                                 "validation_steps": self.validation_steps})


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
