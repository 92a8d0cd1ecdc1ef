"""The reserved ids and the word pattern every keras_textgen vocabulary uses, without TensorFlow.

`keras_textgen.vocab` re-exports them; `keras_textgen.lite` (the on-device
client, NumPy and LiteRT only) reads them from here.
"""

PAD_ID = 0
OOV_ID = 1
EOS_ID = 2
PAD_TOKEN = ""
OOV_TOKEN = "[UNK]"
EOS_TOKEN = "[EOS]"
# Words are runs of letters/digits/underscore; every other non-space
# character is a token of its own, so punctuation survives generation.
WORD_PATTERN = r"(\w+|[^\w\s])"
