"""Private implementation of :mod:`dspex.signature`; import from there."""
