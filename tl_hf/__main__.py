"""`python -m tl_hf ...` = `tl-hf ...` (and `accelerate launch -m tl_hf train text ...`)."""

import sys

from tl_hf.cli import main

sys.exit(main())
