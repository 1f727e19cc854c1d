"""The screen (Textual): the app, its messages, screens and widgets."""
