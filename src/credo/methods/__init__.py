"""credo.methods"""
