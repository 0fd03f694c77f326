"""Config keys -> ordered stages; each strategy is a registered Stage class."""
