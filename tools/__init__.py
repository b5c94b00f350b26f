"""Tools an acting agent can call: protocol, function tools, registry and the built-ins.

The sandbox for untrusted code is ``pedagogy.tools.sandbox`` (imported on demand).
"""

from pedagogy.tools.base import Observation, Tool, ToolCall, ToolError, run_tool_call, tool_spec
from pedagogy.tools.function import FunctionTool, function_tool
from pedagogy.tools.registry import TOOLS, build_tool, known_tools, register_tool, tool_needs

__all__ = [
    "TOOLS",
    "FunctionTool",
    "Observation",
    "Tool",
    "ToolCall",
    "ToolError",
    "build_tool",
    "function_tool",
    "known_tools",
    "register_tool",
    "run_tool_call",
    "tool_needs",
    "tool_spec",
]
