import sys

from xixin.cli import main

sys.exit(main())
