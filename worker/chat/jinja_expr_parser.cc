// Expression rules of the chat template parser, in jinja2's precedence order.
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_filters.h"
#include "worker/chat/jinja_parser_internal.h"
#include "worker/chat/jinja_tests.h"

namespace tokenfab::jinja {

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool simplified, bool with_condexpr, EndTags extra_end,
                                           bool explicit_parentheses, bool with_namespace) {
  SourceLocation loc = Cur().loc;
  std::vector<ExprPtr> args;
  bool is_tuple = false;
  while (true) {
    if (!args.empty()) RETURN_IF_ERROR(ExpectOp(","));
    if (IsTupleEnd(extra_end)) break;
    absl::StatusOr<ExprPtr> item =
        simplified ? ParsePrimary(with_namespace) : ParseExpression(with_condexpr);
    if (!item.ok()) return item.status();
    args.push_back(std::move(*item));
    if (IsOp(Cur(), ",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!args.empty()) return std::move(args[0]);
    if (!explicit_parentheses) {
      return Fail(Cur(), StrCat("Expected an expression, got ", Describe(Cur())));
    }
  }
  ExprPtr t = NewExpr(ExprKind::kTuple, loc);
  t->operands = std::move(args);
  return t;
}

bool Parser::IsTupleEnd(EndTags extra_end) const {
  TokenKind k = Cur().kind;
  if (k == TokenKind::kVariableEnd || k == TokenKind::kBlockEnd || IsOp(Cur(), ")")) return true;
  for (std::string_view end : extra_end) {
    if (IsName(Cur(), end)) return true;
  }
  return false;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  RETURN_IF_ERROR(Enter());
  auto result = ParseExpressionUnguarded(with_condexpr);
  Leave();
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseExpressionUnguarded(bool with_condexpr) {
  return with_condexpr ? ParseCondExpr() : ParseOr();
}

absl::StatusOr<ExprPtr> Parser::ParseCondExpr() {
  SourceLocation loc = Cur().loc;
  ASSIGN_OR_RETURN(ExprPtr expr1, ParseOr());
  while (SkipName("if")) {
    ASSIGN_OR_RETURN(ExprPtr expr2, ParseOr());
    ExprPtr expr3;
    if (SkipName("else")) {
      ASSIGN_OR_RETURN(expr3, ParseCondExpr());
    }
    ExprPtr c = NewExpr(ExprKind::kCondExpr, loc);
    c->operands.push_back(std::move(expr1));
    c->operands.push_back(std::move(expr2));
    c->operands.push_back(std::move(expr3));
    expr1 = std::move(c);
  }
  return expr1;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName(Cur(), "or")) {
    SourceLocation loc = Next().loc;
    ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    left = Binary(ExprKind::kOr, "or", loc, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName(Cur(), "and")) {
    SourceLocation loc = Next().loc;
    ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    left = Binary(ExprKind::kAnd, "and", loc, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  RETURN_IF_ERROR(Enter());
  auto result = ParseNotUnguarded();
  Leave();
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseNotUnguarded() {
  if (IsName(Cur(), "not")) {
    ExprPtr e = NewExpr(ExprKind::kNot, Next().loc);
    ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    e->operands.push_back(std::move(operand));
    return e;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  SourceLocation loc = Cur().loc;
  ASSIGN_OR_RETURN(ExprPtr expr, ParseMath1());
  ExprPtr cmp;
  while (true) {
    std::string op;
    const Token& t = Cur();
    if (t.kind == TokenKind::kOperator && (t.text == "==" || t.text == "!=" || t.text == "<" ||
                                           t.text == "<=" || t.text == ">" || t.text == ">=")) {
      op = t.text;
      Next();
    } else if (SkipName("in")) {
      op = "in";
    } else if (IsName(t, "not") && IsName(Look(), "in")) {
      Next();
      Next();
      op = "notin";
    } else {
      break;
    }
    if (cmp == nullptr) {
      cmp = NewExpr(ExprKind::kCompare, loc);
      cmp->operands.push_back(std::move(expr));
    }
    ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath1());
    cmp->compare_ops.push_back(op);
    cmp->operands.push_back(std::move(rhs));
  }
  return cmp != nullptr ? std::move(cmp) : std::move(expr);
}

ExprPtr Parser::Binary(ExprKind kind, std::string op, SourceLocation loc, ExprPtr a, ExprPtr b) {
  ExprPtr e = NewExpr(kind, loc);
  e->name = std::move(op);
  e->operands.push_back(std::move(a));
  e->operands.push_back(std::move(b));
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp(Cur(), "+") || IsOp(Cur(), "-")) {
    const Token& op = Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    left = Binary(ExprKind::kBinary, op.text, op.loc, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  SourceLocation loc = Cur().loc;
  ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
  if (!IsOp(Cur(), "~")) return first;
  ExprPtr e = NewExpr(ExprKind::kConcat, loc);
  e->operands.push_back(std::move(first));
  while (SkipOp("~")) {
    ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
    e->operands.push_back(std::move(next));
  }
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp(Cur(), "*") || IsOp(Cur(), "/") || IsOp(Cur(), "//") || IsOp(Cur(), "%")) {
    const Token& op = Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    left = Binary(ExprKind::kBinary, op.text, op.loc, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (IsOp(Cur(), "**")) {
    const Token& op = Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    left = Binary(ExprKind::kBinary, "**", op.loc, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  RETURN_IF_ERROR(Enter());
  auto result = ParseUnaryUnguarded(with_filter);
  Leave();
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseUnaryUnguarded(bool with_filter) {
  ExprPtr node;
  if (IsOp(Cur(), "-") || IsOp(Cur(), "+")) {
    const Token& op = Next();
    node = NewExpr(op.text == "-" ? ExprKind::kNeg : ExprKind::kPos, op.loc);
    ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
    node->operands.push_back(std::move(operand));
  } else {
    ASSIGN_OR_RETURN(node, ParsePrimary(false));
  }
  ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary(bool with_namespace) {
  const Token& t = Cur();
  switch (t.kind) {
    case TokenKind::kName: {
      Next();
      ExprPtr e = NewExpr(ExprKind::kLiteral, t.loc);
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        e->literal = Value::Bool(t.text == "true" || t.text == "True");
        return e;
      }
      if (t.text == "none" || t.text == "None") return e;
      e->kind = ExprKind::kName;
      e->name = t.text;
      NoteNameUse(t.text);
      if (with_namespace && IsOp(Cur(), ".")) {
        Next();
        ExprPtr ref = NewExpr(ExprKind::kGetAttr, t.loc);
        ASSIGN_OR_RETURN(ref->name, ExpectName());
        ref->operands.push_back(std::move(e));
        return ref;
      }
      return e;
    }
    case TokenKind::kString: {
      ExprPtr e = NewExpr(ExprKind::kLiteral, t.loc);
      std::string s;
      while (Cur().kind == TokenKind::kString) s += Next().text;
      e->literal = Value::Str(std::move(s));
      return e;
    }
    case TokenKind::kInteger:
    case TokenKind::kFloat: {
      ExprPtr e = NewExpr(ExprKind::kLiteral, t.loc);
      e->literal =
          t.kind == TokenKind::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
      Next();
      return e;
    }
    default:
      break;
  }
  if (IsOp(t, "(")) {
    Next();
    ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(false, true, {}, /*explicit_parentheses=*/true, false));
    RETURN_IF_ERROR(ExpectOp(")"));
    return e;
  }
  if (IsOp(t, "[") || IsOp(t, "{")) return ParseListOrDict();
  return Unexpected(t);
}

absl::StatusOr<ExprPtr> Parser::ParseListOrDict() {
  const Token& open = Next();
  bool is_dict = open.text == "{";
  std::string close = is_dict ? "}" : "]";
  ExprPtr e = NewExpr(is_dict ? ExprKind::kDict : ExprKind::kList, open.loc);
  while (!IsOp(Cur(), close)) {
    if (!e->operands.empty()) RETURN_IF_ERROR(ExpectOp(","));
    if (IsOp(Cur(), close)) break;
    ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
    e->operands.push_back(std::move(item));
    if (is_dict) {
      RETURN_IF_ERROR(ExpectOp(":"));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      e->operands.push_back(std::move(value));
    }
  }
  RETURN_IF_ERROR(ExpectOp(close));
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(Cur(), ".") || IsOp(Cur(), "[")) {
      ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp(Cur(), "(")) {
      ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp(Cur(), "|")) {
      ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName(Cur(), "is")) {
      ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp(Cur(), "(")) {
      ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
  const Token& t = Next();
  if (t.text == ".") {
    const Token& attr = Cur();
    if (attr.kind == TokenKind::kName) {
      ExprPtr e = NewExpr(ExprKind::kGetAttr, t.loc);
      e->name = Next().text;
      e->operands.push_back(std::move(node));
      return e;
    }
    if (attr.kind != TokenKind::kInteger) return Fail(attr, "expected name or number");
    ExprPtr key = NewExpr(ExprKind::kLiteral, attr.loc);
    key->literal = Value::Int(Next().int_value);
    ExprPtr e = NewExpr(ExprKind::kGetItem, t.loc);
    e->operands.push_back(std::move(node));
    e->operands.push_back(std::move(key));
    return e;
  }
  // '[': one subscript, a slice, or a tuple of plain subscripts.
  std::vector<ExprPtr> args;
  ExprPtr slice;
  while (!IsOp(Cur(), "]")) {
    if (!args.empty() || slice != nullptr) RETURN_IF_ERROR(ExpectOp(","));
    ExprPtr start;
    if (!IsOp(Cur(), ":")) {
      ASSIGN_OR_RETURN(start, ParseExpression(true));
      if (!IsOp(Cur(), ":")) {
        args.push_back(std::move(start));
        continue;
      }
    }
    if (slice != nullptr || !args.empty())
      return Fail(Cur(), "multi-dimensional slices are not supported");
    Next();  // ':'
    slice = NewExpr(ExprKind::kSlice, t.loc);
    slice->operands.push_back(nullptr);  // the sliced object, filled below
    slice->operands.push_back(std::move(start));
    ExprPtr stop, step;
    if (!IsOp(Cur(), ":") && !IsOp(Cur(), "]") && !IsOp(Cur(), ",")) {
      ASSIGN_OR_RETURN(stop, ParseExpression(true));
    }
    if (SkipOp(":") && !IsOp(Cur(), "]") && !IsOp(Cur(), ",")) {
      ASSIGN_OR_RETURN(step, ParseExpression(true));
    }
    slice->operands.push_back(std::move(stop));
    slice->operands.push_back(std::move(step));
  }
  RETURN_IF_ERROR(ExpectOp("]"));
  if (slice != nullptr) {
    if (!args.empty()) return Fail(t, "multi-dimensional slices are not supported");
    slice->operands[0] = std::move(node);
    return slice;
  }
  if (args.empty()) return Fail(t, "expected subscript expression");
  ExprPtr e = NewExpr(ExprKind::kGetItem, t.loc);
  e->operands.push_back(std::move(node));
  if (args.size() == 1) {
    e->operands.push_back(std::move(args[0]));
  } else {
    ExprPtr tuple = NewExpr(ExprKind::kTuple, t.loc);
    tuple->operands = std::move(args);
    e->operands.push_back(std::move(tuple));
  }
  return e;
}

// Appends the call arguments `( ... )` to e->operands / e->keywords.
absl::Status Parser::ParseCallArgs(Expr* e) {
  const Token& open = Cur();
  RETURN_IF_ERROR(ExpectOp("("));
  bool require_comma = false;
  while (!IsOp(Cur(), ")")) {
    if (require_comma) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(Cur(), ")")) break;
    }
    if (IsOp(Cur(), "*") || IsOp(Cur(), "**")) {
      return Fail(Cur(), "*args and **kwargs in calls are not supported");
    }
    if (Cur().kind == TokenKind::kName && IsOp(Look(), "=")) {
      KeywordArg kw;
      kw.name = Next().text;
      Next();
      ASSIGN_OR_RETURN(kw.value, ParseExpression(true));
      e->keywords.push_back(std::move(kw));
    } else {
      if (!e->keywords.empty()) return Fail(open, "invalid syntax for function call expression");
      ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression(true));
      e->operands.push_back(std::move(arg));
    }
    require_comma = true;
  }
  return ExpectOp(")");
}

absl::StatusOr<ExprPtr> Parser::ParseCall(ExprPtr callee) {
  ExprPtr e = NewExpr(ExprKind::kCall, Cur().loc);
  e->operands.push_back(std::move(callee));
  RETURN_IF_ERROR(ParseCallArgs(e.get()));
  return e;
}

absl::StatusOr<std::string> Parser::ParseDottedName() {
  ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (SkipOp(".")) {
    ASSIGN_OR_RETURN(std::string part, ExpectName());
    StrAppend(&name, ".", part);
  }
  return name;
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp(Cur(), "|") || start_inline) {
    if (!start_inline) Next();
    start_inline = false;
    const Token& name_token = Cur();
    ASSIGN_OR_RETURN(std::string name, ParseDottedName());
    switch (GetFilterSupport(name)) {
      case BuiltinSupport::kSupported:
        break;
      case BuiltinSupport::kNotSupported:
        return Fail(name_token,
                    StrCat("the filter '", name, "' is not supported in chat templates"));
      case BuiltinSupport::kUnknown:
        return Fail(name_token, StrCat("No filter named '", name, "'."));
    }
    ExprPtr e = NewExpr(ExprKind::kFilter, name_token.loc);
    e->name = std::move(name);
    e->operands.push_back(std::move(node));
    if (IsOp(Cur(), "(")) RETURN_IF_ERROR(ParseCallArgs(e.get()));
    node = std::move(e);
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr node) {
  SourceLocation loc = Next().loc;  // 'is'
  bool negated = SkipName("not");
  const Token& name_token = Cur();
  ASSIGN_OR_RETURN(std::string name, ParseDottedName());
  switch (GetTestSupport(name)) {
    case BuiltinSupport::kSupported:
      break;
    case BuiltinSupport::kNotSupported:
      return Fail(name_token, StrCat("the test '", name, "' is not supported in chat templates"));
    case BuiltinSupport::kUnknown:
      return Fail(name_token, StrCat("No test named '", name, "'."));
  }
  ExprPtr e = NewExpr(ExprKind::kTest, loc);
  e->name = std::move(name);
  e->operands.push_back(std::move(node));
  const Token& t = Cur();
  if (IsOp(t, "(")) {
    RETURN_IF_ERROR(ParseCallArgs(e.get()));
  } else if ((t.kind == TokenKind::kName || t.kind == TokenKind::kString ||
              t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat || IsOp(t, "[") ||
              IsOp(t, "{")) &&
             !IsName(t, "else") && !IsName(t, "or") && !IsName(t, "and")) {
    if (IsName(t, "is")) return Fail(t, "You cannot chain multiple tests with is");
    ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary(false));
    ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    e->operands.push_back(std::move(arg));
  }
  if (!negated) return e;
  ExprPtr n = NewExpr(ExprKind::kNot, loc);
  n->operands.push_back(std::move(e));
  return n;
}

void Parser::NoteNameUse(std::string_view name) {
  for (Stmt* frame : macro_frames_) {
    if (name == "varargs") frame->uses_varargs = true;
    if (name == "kwargs") frame->uses_kwargs = true;
    if (name == "caller") frame->uses_caller = true;
  }
}

}  // namespace tokenfab::jinja
