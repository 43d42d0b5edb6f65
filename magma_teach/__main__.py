import sys

from magma_teach.cli import main

sys.exit(main())
