"""``python -m pygents_dist worker ...`` runs a worker; anything else is the ops CLI."""

import sys

from pygents_dist._cli import main, worker_main

if len(sys.argv) > 1 and sys.argv[1] == "worker":
    sys.exit(worker_main(sys.argv[2:]))
sys.exit(main(sys.argv[1:]))
