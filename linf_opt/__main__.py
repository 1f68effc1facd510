import sys

from linf_opt.cli import main

sys.exit(main())
