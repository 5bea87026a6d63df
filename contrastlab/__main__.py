import sys

from contrastlab.cli import main

sys.exit(main())
