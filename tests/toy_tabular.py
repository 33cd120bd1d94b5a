"""A fourth modality declared from outside `tl_hf`: tabular rows of numbers.

Test-only, and the worked example of `docs/modalities.md`: one module declares the modality
(and, because its model is new to transformers too, the model and its layer-depth family),
then registers it. `tests/test_modality.py` trains it end to end through the recipe.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from tl_hf.errors import UserError
from tl_hf.modality import Modality, register_modality
from tl_hf.strategy import FAMILIES, Family

# ---------------------------------------------------------------------------- the model


class TabularConfig(PretrainedConfig):
    model_type = "toy-tabular"

    def __init__(self, num_features=4, hidden_size=16, num_hidden_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.hidden_size, self.num_hidden_layers = (
            num_features,
            hidden_size,
            num_hidden_layers,
        )


class TabularModel(PreTrainedModel):
    config_class = TabularConfig
    base_model_prefix = "tabular"

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Linear(config.num_features, config.hidden_size)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.GELU())
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    def forward(self, input_features):
        hidden = self.embed(input_features)
        for layer in self.layers:
            hidden = hidden + layer(hidden)
        return self.norm(hidden)


class TabularForClassification(PreTrainedModel):
    config_class = TabularConfig
    base_model_prefix = "tabular"

    def __init__(self, config):
        super().__init__(config)
        self.tabular = TabularModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_features, labels=None, **kwargs):
        logits = self.classifier(self.tabular(input_features))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register("toy-tabular", TabularConfig)
AutoModelForSequenceClassification.register(TabularConfig, TabularForClassification)
# LLRD and frozen layers need to know the depth of each parameter: front-end 0, blocks 1..L, top L+1.
FAMILIES["toy-tabular"] = Family(
    lambda model: model.config.num_hidden_layers,
    ((r"^embed\.", 0), (r"^layers\.(\d+)\.", "block"), (r"^norm\.", "top")),
)

# ---------------------------------------------------------------------------- the modality


def find_input_columns(columns, features, label, data_args):
    """Every numeric column but the label is a feature; they travel as one list column."""
    numeric = [
        c
        for c in columns
        if c != label and getattr(features[c], "dtype", "") in ("float32", "float64", "int64")
    ]
    if not numeric:
        raise UserError(f"no numeric feature columns; columns are: {', '.join(columns)}")
    return {f"feature_{i}": c for i, c in enumerate(numeric)}


class Standardise:
    """Rows -> one float vector per row (the processor: a column order, nothing learned)."""

    def save_pretrained(self, path):  # the Trainer saves its processing class beside the model
        with open(os.path.join(path, "tabular_processor.json"), "w") as f:
            json.dump({"processor": "Standardise"}, f)

    def __call__(self, batch):
        names = sorted(
            (k for k in batch if k.startswith("feature_")), key=lambda k: int(k.split("_")[1])
        )
        rows = list(zip(*(batch[k] for k in names)))
        return {
            "input_features": [[float(v) for v in row] for row in rows],
            "labels": batch["label"],
        }


def build_collator(processor):
    def collate(rows):
        batch = {
            "input_features": torch.tensor([r["input_features"] for r in rows], dtype=torch.float32)
        }
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([int(r["labels"]) for r in rows])
        return batch

    return collate


TABULAR = register_modality(
    Modality(
        name="tabular",
        task="tabular-classification",
        auto_model="AutoModelForSequenceClassification",
        input_column="feature_0",
        default_learning_rates={"frozen": 1e-2, "full": 3e-3, "llrd": 3e-3},
        example_input="[[0.1, 0.2, 0.3, 0.4]]",
        find_input_columns=find_input_columns,
        build_processor=lambda model_path, args, config: Standardise(),
        make_preprocess=lambda processor, data_args, train_split: processor,
        build_collator=build_collator,
    )
)
