"""``python -m ipem``: the same as the ``ipem`` command."""
import sys

from .cli import main

sys.exit(main())
