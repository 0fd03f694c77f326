"""Importing this module registers every built-in strategy stage."""
