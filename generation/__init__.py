"""Generation: prompt templates, the OpenAI-compatible LLM client (vLLM), the embedded
extractive generator, citation parsing and validation, and refusal when the sources do
not support an answer.
"""
