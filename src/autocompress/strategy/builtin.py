"""Importing this module registers every built-in strategy stage."""

import autocompress.strategy.quant_post  # noqa: F401
