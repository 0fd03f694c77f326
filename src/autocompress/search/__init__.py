"""Search over compression settings (Optuna) and the scores they are judged by."""
