import sys

from toad.cli import main

sys.exit(main())
