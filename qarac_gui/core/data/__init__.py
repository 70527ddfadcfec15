"""Task data: reading files and Hub datasets, checking rows and labels, tokenising, the task preview."""
