"""Agent runtimes: OpenAI-compatible LLM agent, offline agent, remote-worker proxy."""
