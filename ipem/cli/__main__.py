"""``python -m ipem.cli``: the same as the ``ipem`` command."""
import sys

from .main import main

sys.exit(main())
