"""PyFlink runtime."""
