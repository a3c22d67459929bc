"""Filters: one module per filter behind the protocol in ``base.py``."""

from distillpipe.filters.base import FILTERS, Filter, FilterOptions, Verdict, build_filter

__all__ = ["FILTERS", "Filter", "FilterOptions", "Verdict", "build_filter"]
