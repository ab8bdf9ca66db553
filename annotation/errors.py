"""The errors services raise for requests that cannot be carried out; their messages are fit to show the user."""


class ServiceError(Exception):
    """A request that cannot be carried out, with a message fit to show the user."""


class StaleItem(ServiceError):
    """The item changed since the user loaded it."""
