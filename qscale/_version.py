"""The package version, in a module of its own so that modules which report it (the Hub
client's user agent) need not import the package's ``__init__``, which imports everything."""

__version__ = "0.1.0"
