import sys

from hashguard.cli import main

sys.exit(main())
