"""Tests of dspex.backends.native."""
