"""A scripted fake LLM server for tests: real wire formats, local only."""

from tests.fake_llm.server import Failure, FakeLLMServer, Malformed, ReceivedRequest, Reply, tool_results_in

__all__ = ["Failure", "FakeLLMServer", "Malformed", "ReceivedRequest", "Reply", "tool_results_in"]
