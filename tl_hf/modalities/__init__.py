"""modalities"""
