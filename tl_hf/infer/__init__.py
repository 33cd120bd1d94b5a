"""After training: a finished run folder put to use. `predict` scores new inputs, `evaluate`
scores labelled ones against the run's report, `calibrate` holds the temperature scaling fitted
at the end of training, `serve` answers HTTP requests, `export` writes ONNX.

Every command loads the run the same way (`tl_hf.infer.loaded.load_run`): the model with the
modality's auto class, the processor as training built it, the preprocessing and collation
of the modality (the same code that produced the run's test metrics)."""
