import sys

from opsintel.cli import main

sys.exit(main())
