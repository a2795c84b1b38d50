"""text-svc: chat completions over gRPC against OpenAI, Anthropic and OpenAI-compatible servers."""
