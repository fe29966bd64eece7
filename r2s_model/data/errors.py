"""The one error type of every dataset reader."""


class DatasetFormatError(ValueError):
    """A scene or annotation file that does not follow its documented layout; the message names
    the file and the field."""
