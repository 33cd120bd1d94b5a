"""`python -m tl_hf.lab ...`: the fine-tuning lab (see `tl_hf.lab`)."""

from tl_hf.cli.process import exit_process
from tl_hf.lab.api import main

if __name__ == "__main__":
    exit_process(main())
