"""Tasks: the head, loss, metrics and prediction of each kind of fine-tuning."""
