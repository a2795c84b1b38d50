"""Local HTTP servers that speak the OpenAI (chat and images), Anthropic, Ollama, Stability,
AUTOMATIC1111 and ComfyUI wire formats exactly, for tests, benchmarks and the offline demo
provider."""

from provider_stand_ins.behaviour import Behaviour, count_words, reply_text, reply_words
from provider_stand_ins.runner import PROVIDERS, StandIn
from provider_stand_ins.state import OUTCOMES, RequestRecord, StandInState

__all__ = [
    "OUTCOMES",
    "PROVIDERS",
    "Behaviour",
    "RequestRecord",
    "StandIn",
    "StandInState",
    "count_words",
    "reply_text",
    "reply_words",
]
