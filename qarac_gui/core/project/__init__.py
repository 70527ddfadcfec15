"""The project file: its dataclasses, strict loading and saving, validation and static limits."""
