"""Retrieval-augmented generation: QA sets, prompts with passages, generation, scoring."""
