"""Importing this module registers every built-in strategy stage."""

import autocompress.strategy.quant_post  # noqa: F401
import autocompress.strategy.distillation  # noqa: F401
import autocompress.strategy.asp_prune  # noqa: F401
import autocompress.strategy.channel_prune  # noqa: F401
import autocompress.strategy.unstructured_prune  # noqa: F401
import autocompress.strategy.transformer_prune  # noqa: F401
import autocompress.strategy.quant_aware  # noqa: F401
