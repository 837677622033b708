import sys

from sandboxmode.cli import main

sys.exit(main())
