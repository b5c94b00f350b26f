"""The ``calculator`` tool: arithmetic by walking the AST, never ``eval``.

Integers (and ratios of them: ``/`` on integers is an exact fraction) stay exact, so a chain of a
hundred additions gives the same digits a checker computes; floats appear only when the input has
them or a result is not a whole number. Sizes are bounded before any work is done, so ``9**9**9``
is refused instead of freezing the host.
"""

from __future__ import annotations

import ast
import math
import operator
from fractions import Fraction

from pedagogy.tools.base import ToolError
from pedagogy.tools.function import FunctionTool

__all__ = ["MAX_BITS", "calculate", "calculator_tool", "evaluate"]

MAX_BITS = 10_000  # about 3,000 decimal digits: far beyond any exercise, instant to compute
MAX_LENGTH = 1_000

Number = int | float | Fraction

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_HINT = "use numbers, parentheses and + - * / // % ** only"


def _bits(value: Number) -> int:
    if isinstance(value, Fraction):
        return max(value.numerator.bit_length(), value.denominator.bit_length())
    if isinstance(value, int):
        return value.bit_length()
    return 0


def _check_size(value: Number) -> Number:
    if _bits(value) > MAX_BITS:
        raise ToolError(f"error: the result is too large (over {MAX_BITS} bits)", error="refused")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("error: the result is not a finite number", error="math_error")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        exponent = exponent.numerator
    if isinstance(exponent, int) and not isinstance(base, float):
        if abs(base) > 1 and abs(exponent) * _bits(base) > MAX_BITS:
            raise ToolError(
                f"error: the power is too large (over {MAX_BITS} bits)", error="refused"
            )
        if base == 0 and exponent < 0:
            raise ToolError("error: division by zero (0 to a negative power)", error="math_error")
        return Fraction(base) ** exponent if exponent < 0 else base**exponent
    if base < 0 and not isinstance(exponent, int):
        raise ToolError(
            "error: a negative number to a fractional power is not real", error="math_error"
        )
    try:
        return float(base) ** float(exponent)
    except OverflowError:
        raise ToolError("error: the result is too large for a float", error="math_error") from None
    except ZeroDivisionError:
        raise ToolError(
            "error: division by zero (0 to a negative power)", error="math_error"
        ) from None


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError(f"error: {value!r} is not a number; {_HINT}", error="refused")
        return _check_size(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        if isinstance(node.op, ast.Div) and isinstance(left, (int, Fraction)):
            if isinstance(right, (int, Fraction)):
                left = Fraction(left)  # exact: 1/3*3 == 1
        try:
            return _check_size(_OPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("error: division by zero", error="math_error") from None
        except OverflowError:
            raise ToolError(
                "error: the result is too large for a float", error="math_error"
            ) from None
    if isinstance(node, ast.Name):
        raise ToolError(
            f"error: names are not allowed (found {node.id!r}); {_HINT}", error="refused"
        )
    if isinstance(node, ast.Attribute):
        raise ToolError(
            f"error: attributes are not allowed (found .{node.attr}); {_HINT}", error="refused"
        )
    if isinstance(node, ast.Call):
        raise ToolError(f"error: function calls are not allowed; {_HINT}", error="refused")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("error: ^ is not a power here; write ** (e.g. 2**10)", error="refused")
    raise ToolError(f"error: {type(node).__name__} is not allowed; {_HINT}", error="refused")


def evaluate(expression: str) -> Number:
    """The exact value of an arithmetic expression; raises ``ToolError`` with a readable reason."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(
            f"error: the expression is longer than {MAX_LENGTH} characters", error="refused"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ToolError(
            f"error: not an arithmetic expression ({exc.msg}{where}); {_HINT}",
            error="bad_arguments",
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise ToolError("error: the expression is nested too deeply", error="refused") from None
    try:
        return _eval(tree)
    except RecursionError:
        raise ToolError("error: the expression is nested too deeply", error="refused") from None


def _render(value: Number) -> str:
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else repr(float(value))
    return repr(value)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly (integers never lose digits).

    Args:
        expression: Numbers, parentheses and + - * / // % ** only, e.g. "(12 + 7) * 3 - 2**5".
    """
    return _render(evaluate(expression))


def calculator_tool() -> FunctionTool:
    """The built-in ``calculator`` tool."""
    return FunctionTool(calculate, name="calculator")
