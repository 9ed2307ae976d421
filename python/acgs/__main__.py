"""``python -m acgs`` is the ``acgs`` command."""

import sys

from acgs.cli import main

sys.exit(main())
