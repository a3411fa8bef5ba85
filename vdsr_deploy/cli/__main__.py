"""``python -m vdsr_deploy.cli``: the ``vdsr`` command."""

import sys

from vdsr_deploy.cli import app

sys.exit(app())
