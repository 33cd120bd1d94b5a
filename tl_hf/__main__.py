"""`python -m tl_hf ...` = `tl-hf ...` (and `accelerate launch -m tl_hf train text ...`)."""

from tl_hf.cli import main
from tl_hf.cli.process import exit_process

exit_process(main())
