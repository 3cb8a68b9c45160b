import sys

from chatplan.launch import run

sys.exit(run(sys.argv[1:]))
