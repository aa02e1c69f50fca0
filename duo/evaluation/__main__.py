"""`python -m duo.evaluation`: the same as `duo evaluate-duplex`."""

import sys

from .cli import main

sys.exit(main())
