"""Syntax-aware selection: enclosing node, expand/shrink, and named targets, in character offsets."""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from editor.languages import get_language, parse
from editor.text import ByteIndex, EditorError, check_span

TARGETS = ("function body", "block", "argument list", "string", "expression", "statement", "comment",
           "function", "class")

FUNCTIONS = {
    "function_definition", "lambda", "function_declaration", "function_expression", "arrow_function",
    "method_definition", "generator_function_declaration", "generator_function", "function_item",
    "closure_expression", "method_declaration", "func_literal", "lambda_expression", "function_signature",
}
_CLASSES = {
    "class_definition", "class_declaration", "class", "abstract_class_declaration", "interface_declaration",
    "struct_item", "enum_item", "trait_item", "impl_item", "class_specifier", "struct_specifier",
    "enum_specifier", "type_declaration", "enum_declaration",
}
_BLOCKS = {
    "block", "compound_statement", "statement_block", "class_body", "declaration_list",
    "field_declaration_list", "object", "array", "rule_set", "fenced_code_block", "element",
}
_ARGUMENTS = {
    "argument_list", "arguments", "parameters", "formal_parameters", "parameter_list", "lambda_parameters",
    "closure_parameters", "type_arguments", "type_parameters", "arguments_list",
}
_STRINGS = {
    "string", "string_literal", "template_string", "raw_string_literal", "interpreted_string_literal",
    "concatenated_string", "char_literal", "character_literal", "string_value", "quoted_attribute_value",
}
COMMENTS = {"comment", "line_comment", "block_comment", "html_block"}
_STATEMENTS_EXTRA = {
    "let_declaration", "lexical_declaration", "variable_declaration", "declaration", "short_var_declaration",
    "var_declaration", "const_declaration", "field_declaration", "decorated_definition", "pair",
}
_EXPRESSIONS_EXTRA = {
    "call", "attribute", "subscript", "list", "dictionary", "tuple", "set", "lambda", "await", "integer",
    "float", "number", "identifier", "true", "false", "none", "null", "array", "object", "list_comprehension",
    "dictionary_comprehension", "set_comprehension", "generator_expression", "arrow_function", "selector_expression",
    "template_string", "concatenated_string", "string",
}


class NoTarget(EditorError):
    """No node of the asked kind encloses the cursor."""


@dataclass(frozen=True)
class NodeSpan:
    start: int  # character offsets into the document, end exclusive
    end: int
    kind: str  # tree-sitter node type, e.g. "block"
    label: str  # for people, e.g. "function greet"


def _is_statement(t: str) -> bool:
    return t.endswith("_statement") or t in _STATEMENTS_EXTRA


def _is_expression(t: str) -> bool:
    return t.endswith(("_expression", "_operator", "_literal")) or t in _EXPRESSIONS_EXTRA


_MATCHERS = {
    "function": lambda t: t in FUNCTIONS,
    "class": lambda t: t in _CLASSES,
    "block": lambda t: t in _BLOCKS,
    "argument list": lambda t: t in _ARGUMENTS,
    "string": lambda t: t in _STRINGS,
    "comment": lambda t: t in COMMENTS,
    "statement": _is_statement,
    "expression": _is_expression,
}


class Structure:
    """One parse of a document in a language with a grammar; every query answers in characters."""

    def __init__(self, text: str, language: str) -> None:
        self.text = text
        self.language = get_language(language).name
        self.tree = parse(text, self.language)
        self._index = ByteIndex(text)

    # -- conversions -------------------------------------------------------------------------------
    def span(self, node: Node, kind: str | None = None, label: str | None = None) -> NodeSpan:
        return NodeSpan(self._index.to_char(node.start_byte), self._index.to_char(node.end_byte),
                        kind or node.type, label or self._label(node))

    def _label(self, node: Node) -> str:
        name = node.child_by_field_name("name")
        if name is not None and name.text is not None:
            return f"{node.type.replace('_', ' ')} {name.text.decode('utf-8', 'replace')}"
        body = (node.text or b"").decode("utf-8", "replace").strip().split("\n", 1)[0]
        return f"{node.type.replace('_', ' ')}: {body[:40]}"

    def node(self, start: int, end: int | None = None) -> Node:
        """Smallest named node enclosing the span; a rough selection is trimmed of outer whitespace."""
        end = start if end is None else end
        check_span(self.text, start, end)
        piece = self.text[start:end]
        if piece.strip():
            start += len(piece) - len(piece.lstrip())
            end -= len(piece) - len(piece.rstrip())
        b0, b1 = self._index.to_byte(start), self._index.to_byte(end)
        node = self.tree.root_node.named_descendant_for_byte_range(b0, b1)
        return node if node is not None else self.tree.root_node

    def ancestors(self, node: Node) -> list[Node]:
        chain: list[Node] = []
        current: Node | None = node
        while current is not None:
            if current.is_named:
                chain.append(current)
            current = current.parent
        return chain

    # -- selection ---------------------------------------------------------------------------------
    def enclosing(self, start: int, end: int | None = None) -> NodeSpan:
        """The smallest named node around a cursor (end=None) or a rough selection."""
        return self.span(self.node(start, end))

    def path(self, start: int, end: int | None = None) -> list[NodeSpan]:
        """Selection path from the smallest enclosing node to the root, each strictly larger."""
        out: list[NodeSpan] = []
        for node in self.ancestors(self.node(start, end)):
            s = self.span(node)
            if not out or (s.start, s.end) != (out[-1].start, out[-1].end):
                out.append(s)
        return out

    def expand(self, start: int, end: int) -> NodeSpan | None:
        """The smallest named node strictly larger than the selection; None once at the root."""
        check_span(self.text, start, end)
        for s in self.path(start, end):
            if s.start <= start and s.end >= end and (s.start, s.end) != (start, end):
                return s
        return None

    def shrink(self, start: int, end: int, toward: int | None = None) -> NodeSpan | None:
        """Step back down the selection path toward a cursor (default: the selection's start)."""
        check_span(self.text, start, end)
        toward = start if toward is None else toward
        if not start <= toward <= end:
            raise EditorError(f"shrink toward {toward}: the cursor is outside the selection ({start}, {end})")
        smaller = [s for s in self.path(toward)
                   if start <= s.start and s.end <= end and (s.start, s.end) != (start, end)]
        return smaller[-1] if smaller else None

    # -- named targets -----------------------------------------------------------------------------
    def target(self, what: str, start: int, end: int | None = None) -> NodeSpan:
        """The nearest enclosing node of a named kind (see TARGETS); NoTarget when there is none."""
        if what not in TARGETS:
            raise EditorError(f"unknown target {what!r}; targets: {', '.join(TARGETS)}")
        chain = self.ancestors(self.node(start, end))
        if what == "function body":
            for node in chain:
                if node.type in FUNCTIONS:
                    body = node.child_by_field_name("body")
                    if body is not None:
                        return self._body(node, body)
        else:
            match = _MATCHERS[what]
            for node in chain:
                if match(node.type):
                    return self.span(node)
        raise NoTarget(f"no {what} around characters {start}..{start if end is None else end} ({self.language})")

    def _body(self, function: Node, body: Node) -> NodeSpan:
        """The part of a function a person regenerates: its statements, not the braces or the docstring.

        Brace languages: from the first to the end of the last statement inside the braces (the braces
        and the indentation before the first statement stay in the document); an empty body is the
        empty span just inside "{". Python: the block from its first statement, whose indentation stays
        outside the span, so the regenerated text starts at the indented column; a leading docstring
        stays too (it is the function's spec), unless it is the only statement. Arrow functions and
        lambdas with an expression body: the expression.
        """
        name = self._label(function)
        label = f"body of {name.split(' ', 2)[-1] if function.child_by_field_name('name') else name}"
        inner = [c for c in body.children if c.type not in ("{", "}")]
        if body.type in _BLOCKS and body.child_count and body.children[0].type == "{":
            if not inner:
                at = self._index.to_char(body.children[0].end_byte)
                return NodeSpan(at, at, body.type, label)
        elif body.type != "block":
            return self.span(body, label=label)
        if self.language == "python" and len(inner) > 1 and _is_docstring(inner[0]):
            inner = inner[1:]
        start, end = self._index.to_char(inner[0].start_byte), self._index.to_char(inner[-1].end_byte)
        end = start + len(self.text[start:end].rstrip())  # Go's statement list ends after the newline
        return NodeSpan(start, end, body.type, label)


def _is_docstring(node: Node) -> bool:
    return (node.type == "expression_statement" and node.named_child_count == 1
            and node.named_children[0].type == "string")
