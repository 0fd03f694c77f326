"""Dataloaders in, validated numpy feeds out; folder datasets for the CLI."""

from autocompress.data.batches import BatchAdapter, InputSpec, input_specs

__all__ = ["BatchAdapter", "InputSpec", "input_specs"]
