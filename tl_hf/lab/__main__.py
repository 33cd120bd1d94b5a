"""`python -m tl_hf.lab ...`: the fine-tuning lab (see `tl_hf.lab`)."""

import sys

from tl_hf.lab.api import main

if __name__ == "__main__":
    sys.exit(main())
