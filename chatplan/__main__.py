import sys

from chatplan.cli import main

sys.exit(main())
