"""credo.tasks"""
