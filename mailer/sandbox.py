"""A Jinja sandbox with resource limits: marketers' templates cannot make huge values, loop forever or burn CPU.

Jinja's own sandbox stops attribute escapes and caps range() only. On top of it, LimitedSandbox bounds:
- every string or sequence a template builds (* + ~ %, str methods, filters), checked *before* allocating where the
  size follows from the operands, so `'a' * 10**9` fails at once instead of taking gigabytes;
- format widths and precisions (`'%*s'|format`, `'{:>9999999}'.format`, center/ljust/indent);
- integer size (** and * on ints);
- the output of every template, macro and {% set %} block (the environment's concat);
- loop iterations and CPU time per message (thread CPU time, checked at loops, calls, operators and output).
Intercepted operators are never constant-folded by Jinja, so nothing large is computed at compile time either.
Limits are per message: render_budget() opens one for several templates (subject, HTML, text).
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, soft_str


@dataclass(frozen=True)
class Limits:
    """What one message's templates may use (docs/security.md)."""

    max_chars: int = 2_000_000       # any string a template builds, and each template's output
    max_items: int = 100_000         # any list a template builds, and loop iterations per message
    max_width: int = 10_000          # format widths and precisions, padding widths
    max_int_bits: int = 4096
    cpu_seconds: float = 0.25


DEFAULT_LIMITS = Limits()


class LimitExceeded(SecurityError):
    """A template went over one of its Limits."""


class Budget:
    """What the current message has used so far."""

    __slots__ = ("deadline", "iterations", "limits", "ticks")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = 0.0      # set at the first clock reading: a message that takes few steps never reads it
        self.iterations = 0
        self.ticks = 0

    def tick(self) -> None:
        """Count one step; every 64 steps, check the CPU time."""
        self.ticks += 1
        if not self.ticks & 63:
            now = time.thread_time()
            if not self.deadline:
                self.deadline = now + self.limits.cpu_seconds
            elif now > self.deadline:
                raise LimitExceeded(f"the template took more than {self.limits.cpu_seconds * 1000:.0f} ms of CPU "
                                    "time for one message")


_BUDGET: ContextVar[Budget | None] = ContextVar("rapport_template_budget", default=None)


@contextmanager
def render_budget(limits: Limits = DEFAULT_LIMITS) -> Iterator[Budget]:
    """One budget for everything rendered inside (a message's parts); nested uses share the outer one."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    budget = Budget(limits)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


_PERCENT_SPEC = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


class _Checks:
    """Size checks shared by the operators, str methods and filters of one environment."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def chars(self, n: int, what: str = "text") -> None:
        if n > self.limits.max_chars:
            raise LimitExceeded(f"the template would make {what} of {n:,} characters (the limit is "
                                f"{self.limits.max_chars:,})")

    def items(self, n: int) -> None:
        if n > self.limits.max_items:
            raise LimitExceeded(f"the template would make a list of {n:,} items (the limit is "
                                f"{self.limits.max_items:,})")

    def width(self, value: object) -> None:
        if isinstance(value, int) and value > self.limits.max_width:
            raise LimitExceeded(f"a width or precision of {value:,} is too large (the limit is "
                                f"{self.limits.max_width:,})")

    def sized(self, value: Any) -> Any:
        """value, if it is not a string or list over the limits."""
        if isinstance(value, str | bytes):
            self.chars(len(value))
        elif isinstance(value, list | tuple):
            self.items(len(value))
        return value

    def repeat(self, seq: Any, times: Any) -> None:
        if isinstance(times, int) and isinstance(seq, Sized) and not isinstance(seq, dict):
            total = len(seq) * max(times, 0)
            if isinstance(seq, str | bytes):
                self.chars(total)
            else:
                self.items(total)

    def int_bits(self, bits: float) -> None:
        if bits > self.limits.max_int_bits:
            raise LimitExceeded(f"the template would make a number of about {bits:,.0f} bits (the limit is "
                                f"{self.limits.max_int_bits:,})")

    def percent_format(self, fmt: str, args: Any) -> None:
        """Widths and precisions of printf-style formatting, literal or taken from args (*)."""
        positional = list(args) if isinstance(args, tuple) else [args]
        index = 0
        for match in _PERCENT_SPEC.finditer(fmt):
            if match.group(4) == "%":
                continue
            for part in (match.group(2), match.group(3)):
                if part == "*":
                    self.width(positional[index] if index < len(positional) else 0)
                    index += 1
                elif part:
                    self.width(int(part))
            index += 1

    def format_spec(self, fmt: str) -> None:
        """Widths and precisions of str.format fields; computed ({:{w}}) ones are refused."""
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return                      # str.format raises the same error with its own message
        for _literal, _name, spec, _conversion in fields:
            if spec and "{" in spec:
                raise LimitExceeded("computed widths in format fields ({:{…}}) are not allowed in templates")
            for digits in re.findall(r"\d+", spec or ""):
                self.width(int(digits))

    def joined(self, sep: str, items: list[Any]) -> None:
        self.items(len(items))
        self.chars(sum(len(x) if isinstance(x, str) else 24 for x in items) + len(sep) * max(len(items) - 1, 0))

    def replaced(self, s: str, old: str, new: str, count: Any = None) -> None:
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        self.chars(len(s) + n * max(len(new) - len(old), 0))

    def str_method(self, text: str, name: str, args: tuple, kwargs: dict) -> tuple:
        """Check a call of a str method before it runs; returns args (join's iterable made a list)."""
        if name in ("center", "ljust", "rjust", "zfill") and args:
            self.width(args[0])
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            self.width(size)
            if isinstance(size, int):
                self.chars(len(text) + text.count("\t") * size)
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            self.replaced(text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
        elif name == "join" and args:
            items = list(args[0])
            self.joined(text, items)
            return (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            self.chars(len(text) * max(longest, 1))
        return args


class _Guards(NodeTransformer):
    """Route every for-loop's iterable and every ~ concatenation through the environment's checks.

    They become calls of internal filters: Jinja compiles a filter to a direct call, far cheaper than the sandboxed
    call() a function call would go through.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_FILTER, [], [], None, None, lineno=node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), JOIN_FILTER, [], [], None, None,
                            lineno=node.lineno)


LOOP_FILTER, JOIN_FILTER = "rapport_loop_guard", "rapport_join_values"


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment plus the Limits of the module doc."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, limits: Limits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.checks = _Checks(limits)
        self.filters.update(_checked_filters(self.checks))
        self.globals["lipsum"] = _small_lipsum
        self.filters[LOOP_FILTER] = self.guard_loop
        self.filters[JOIN_FILTER] = self.join_values
        self.concat = self._bounded_concat   # used for template output, macros and {% set %} blocks

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        source = _Guards().visit(source)
        source.set_environment(self)
        return super()._generate(source, name, filename, defer_init)

    def _bounded_concat(self, chunks: Iterable[str]) -> str:
        # Collecting references first is cheap: each chunk is already bounded, and their number by the loop limit
        # and the CPU budget (checked while the generator runs); the join is what would allocate.
        token = _BUDGET.set(Budget(self.limits)) if _BUDGET.get() is None else None
        try:
            parts = chunks if isinstance(chunks, list) else list(chunks)
        finally:
            if token is not None:
                _BUDGET.reset(token)
        size = sum(map(len, parts))
        if size > self.limits.max_chars:
            self.checks.chars(size, "output")
        return "".join(parts)

    def guard_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Count a loop's iterations against the message's budget."""
        budget = _BUDGET.get()
        if budget is None:
            yield from iterable
            return
        limit = self.limits.max_items
        for item in iterable:
            budget.iterations += 1
            if budget.iterations > limit:
                raise LimitExceeded(f"the template's loops ran more than {limit:,} times for one message")
            budget.tick()
            yield item

    def join_values(self, values: tuple[Any, ...]) -> str:
        """The ~ operator, with the result's size checked before it is made."""
        parts = [soft_str(v) for v in values]
        self.checks.chars(sum(map(len, parts)))
        if any(hasattr(p, "__html__") for p in parts):
            return Markup("").join(parts)
        return "".join(map(str, parts))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        checks = self.checks
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                checks.int_bits(left.bit_length() + right.bit_length())
            else:
                checks.repeat(left, right)
                checks.repeat(right, left)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                checks.int_bits(right * math.log2(abs(left)))
        elif operator == "%" and isinstance(left, str):
            checks.percent_format(left, right)
        return checks.sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        checks = __self.checks
        bound_to = getattr(__obj, "__self__", None)
        if isinstance(bound_to, str):
            args = checks.str_method(bound_to, getattr(__obj, "__name__", ""), args, kwargs)
        wrapped = getattr(__obj, "__wrapped__", None)        # the sandbox's wrapper of str.format / format_map
        if isinstance(getattr(wrapped, "__self__", None), str):
            checks.format_spec(wrapped.__self__)
        return checks.sized(super().call(__context, __obj, *args, **kwargs))


def _small_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """lipsum() with at most 20 paragraphs of at most 200 words."""
    return generate_lorem_ipsum(n=_cap(n, 20), html=html, min=_cap(min, 200), max=_cap(max, 200))


def _cap(value: Any, cap: int) -> Any:
    return value if not isinstance(value, int) else max(1, value if value < cap else cap)


def _like(original: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a checking filter the original's name and the context argument Jinja passes it (not its async flag)."""

    def decorate(check: Callable[..., Any]) -> Callable[..., Any]:
        check.__name__, check.__doc__ = original.__name__, original.__doc__
        if hasattr(original, "jinja_pass_arg"):
            check.jinja_pass_arg = original.jinja_pass_arg   # type: ignore[attr-defined]
        return check

    return decorate


def _checked_filters(checks: _Checks) -> dict[str, Callable[..., Any]]:
    """The built-in filters that can make large values, each checked before it runs."""
    f = DEFAULT_FILTERS

    @_like(f["format"])
    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        checks.percent_format(soft_str(value), kwargs or tuple(args))
        return checks.sized(f["format"](value, *args, **kwargs))

    @_like(f["center"])
    def center(value: str, width: int = 80) -> str:
        checks.width(width)
        return f["center"](value, width)

    @_like(f["indent"])
    def indent(s: str, width: Any = 4, first: bool = False, blank: bool = False) -> str:
        prefix = width if isinstance(width, int) else len(str(width))
        checks.width(prefix)
        checks.chars(len(str(s)) + (str(s).count("\n") + 1) * prefix)
        return f["indent"](s, width, first, blank)

    @_like(f["replace"])
    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> str:
        checks.replaced(soft_str(s), soft_str(old), soft_str(new), count)
        return f["replace"](eval_ctx, s, old, new, count)

    @_like(f["wordwrap"])
    def wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
                 wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
        checks.chars(len(str(s)) * (1 + len(wrapstring or environment.newline_sequence)))
        return f["wordwrap"](environment, s, width, break_long_words, wrapstring, break_on_hyphens)

    @_like(f["join"])
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        if attribute is None:
            checks.joined(soft_str(d), [soft_str(x) for x in items])
        return checks.sized(f["join"](eval_ctx, items, d, attribute))

    @_like(f["batch"])
    def batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
        checks.items(linecount if isinstance(linecount, int) else 0)
        return f["batch"](value, linecount, fill_with)

    @_like(f["slice"])
    def slice_(value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
        checks.items(slices if isinstance(slices, int) else 0)
        return f["slice"](value, slices, fill_with)

    @_like(f["sum"])
    def sum_(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        items = list(iterable)
        if isinstance(start, list | tuple | str) or any(isinstance(x, list | tuple) for x in items[:1]):
            checks.items((len(start) if isinstance(start, Sized) else 0)
                         + sum(len(x) for x in items if isinstance(x, Sized)))
        return checks.sized(f["sum"](environment, items, attribute, start))

    return {"format": format_, "center": center, "indent": indent, "replace": replace, "wordwrap": wordwrap,
            "join": join, "batch": batch, "slice": slice_, "sum": sum_}
