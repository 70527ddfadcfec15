import sys

from qarac_gui.app import main

sys.exit(main())
