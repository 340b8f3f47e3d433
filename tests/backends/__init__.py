"""Tests of dspex.backends."""
