"""`python -m distxfer` runs the command line."""

import sys

from distxfer.cli import main

sys.exit(main())
