"""Embedded offline defaults: real pretrained checkpoints and datasets that ship in packages."""
