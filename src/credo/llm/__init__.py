"""credo.llm"""
