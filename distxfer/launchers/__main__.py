"""`python -m distxfer.launchers`: the command line in `distxfer.launchers.cli`."""

import sys

from distxfer.launchers.cli import main

sys.exit(main())
