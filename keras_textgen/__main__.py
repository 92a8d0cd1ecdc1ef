"""`python -m keras_textgen ...`: the `keras-textgen` command line."""

import sys

from keras_textgen.cli import main

sys.exit(main())
