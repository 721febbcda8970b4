"""Stubs of the providers' HTTP APIs that the end-to-end tests point the real agent CLIs at."""
