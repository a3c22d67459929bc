"""Filters: one module per filter behind the protocol in ``base.py``."""

from distillpipe.filters.base import Filter, FilterOptions, Verdict, build_filter

__all__ = ["Filter", "FilterOptions", "Verdict", "build_filter"]
