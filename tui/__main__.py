import sys

from egress_tui.cli import main

sys.exit(main())
