"""Embedded offline defaults: converters and loaders for checkpoints and data that ship in packages."""
