"""The label-consistency filter for stored augmented copies (`--augment_filter probe`).

An augmentation that changes a text's meaning (a synonym of the wrong sense, a deleted "not",
a masked language model's fill) keeps the original's label while the text has lost it. The
filter fits a linear probe on the run checkpoint's frozen features of the original training
rows (the same probe checkpoint selection uses, `tl_hf.select.rank.fit_probe`) and keeps an
augmented copy only when the probe still gives it its label. One frozen pass over the
originals and the copies (`tl_hf.select.extract`, whose features land in the feature cache a
later frozen or LP-FT run reads).
"""

from __future__ import annotations


def consistent_copies(plan, originals, stored, seed: int, options):
    """`stored` (the `originals` followed by their augmented copies, `apply_augment_copies`)
    without the copies a probe on the originals' frozen features gives another label;
    `options` are the frozen extraction's model options (the caller resolves them).
    Returns (the dataset, how many copies were dropped)."""
    import numpy as np
    from datasets import DatasetDict, concatenate_datasets

    from tl_hf.select.extract import Candidate, extract_candidate
    from tl_hf.select.rank import fit_probe

    n = len(originals)
    copies = stored.select(range(n, len(stored)))
    if not len(copies):
        return stored, 0
    candidate = Candidate(
        plan.display_name, plan.model_path, plan.checkpoint_config, plan.display_name
    )
    splits = DatasetDict(train=originals, validation=copies)
    feats = extract_candidate(candidate, plan.args, plan.modality, splits, options, timed=False)
    predicted = fit_probe(feats.train, feats.train_labels, seed)(feats.validation)
    keep = np.flatnonzero(predicted == np.asarray(feats.validation_labels))
    return concatenate_datasets([originals, copies.select(keep)]), len(copies) - len(keep)
