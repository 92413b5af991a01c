"""credo.tabular"""
