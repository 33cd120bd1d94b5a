"""The strategies that ship with tl-hf, one module each (`basic` holds frozen, full and llrd).

Each module builds `tl_hf.strategy.Strategy` records and registers them; `tl_hf.strategy`
imports a module the first time one of its names is asked for.
"""
