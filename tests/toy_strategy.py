"""A strategy declared from outside `tl_hf`: BitFit (Ben Zaken et al. 2022), the biases and the
new head train, every other weight stays as pretrained.

Test-only, and the worked example of `docs/strategies.md`: one record, one registration line.
`tests/test_strategies.py` trains it end to end through the pipeline.
"""

from tl_hf.strategy import Strategy, head_parameter_names, register_strategy


def bias_and_head(model, options) -> set[str]:
    """The parameters BitFit trains: every bias, and the new head."""
    biases = {name for name, _ in model.named_parameters() if name.endswith(".bias")}
    return biases | head_parameter_names(model)


BITFIT = register_strategy(
    Strategy(
        name="bitfit",
        description="only the biases and the new head train",
        trainable=bias_and_head,
        default_learning_rate=lambda rates, options: 10 * rates["full"],
        describe=lambda settings: "biases and head only",
    )
)
