"""What runs leave: exported models and the history of past runs."""
