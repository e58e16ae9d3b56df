// Statement rules of the chat template parser, and its entry point.
#include "worker/chat/jinja_parser.h"

#include <initializer_list>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_lexer.h"
#include "worker/chat/jinja_parser_internal.h"

namespace tokenfab::jinja {
namespace {

// Tags jinja2 knows that this interpreter deliberately does not run.
constexpr std::string_view kUnsupportedTags[] = {
    "block", "extends", "include", "import", "from", "autoescape", "trans", "do", "pluralize"};

}  // namespace

absl::StatusOr<StmtList> Parser::Subparse(EndTags end_tags) {
  StmtList body;
  while (true) {
    const Token& t = Cur();
    switch (t.kind) {
      case TokenKind::kData: {
        StmtPtr s = NewStmt(StmtKind::kText, t.loc);
        s->text = Next().text;
        body.push_back(std::move(s));
        break;
      }
      case TokenKind::kVariableBegin: {
        Next();
        StmtPtr s = NewStmt(StmtKind::kPrint, Cur().loc);
        ASSIGN_OR_RETURN(s->expr, ParseTuple(/*simplified=*/false, /*with_condexpr=*/true, {},
                                             /*explicit_parentheses=*/false, false));
        RETURN_IF_ERROR(ExpectKind(TokenKind::kVariableEnd, "end of print statement"));
        body.push_back(std::move(s));
        break;
      }
      case TokenKind::kBlockBegin: {
        Next();
        for (std::string_view end : end_tags) {
          if (IsName(Cur(), end)) return body;
        }
        ASSIGN_OR_RETURN(StmtList stmts, ParseStatement());
        for (StmtPtr& s : stmts) body.push_back(std::move(s));
        RETURN_IF_ERROR(ExpectKind(TokenKind::kBlockEnd, "end of statement block"));
        break;
      }
      case TokenKind::kEof:
        if (end_tags.size() > 0) {
          std::string wanted;
          for (std::string_view end : end_tags) {
            StrAppend(&wanted, wanted.empty() ? "" : " or ", "'", end, "'");
          }
          return Fail(t, StrCat("unexpected end of template, expected ", wanted));
        }
        return body;
      default:
        return Unexpected(t);
    }
  }
}

absl::StatusOr<StmtList> Parser::ParseStatements(EndTags end_tags, bool drop_needle) {
  SkipOp(":");
  RETURN_IF_ERROR(ExpectKind(TokenKind::kBlockEnd, "end of statement block"));
  ASSIGN_OR_RETURN(StmtList body, Subparse(end_tags));
  if (drop_needle) Next();
  return body;
}

absl::StatusOr<StmtList> Parser::ParseStatement() {
  RETURN_IF_ERROR(Enter());
  auto result = ParseStatementUnguarded();
  Leave();
  return result;
}

absl::StatusOr<StmtList> Parser::ParseStatementUnguarded() {
  const Token& tag = Cur();
  if (tag.kind != TokenKind::kName) return Fail(tag, "tag name expected");
  std::string name = tag.text;
  StmtList out;
  if (name == "for") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseFor());
    out.push_back(std::move(s));
  } else if (name == "if") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseIf());
    out.push_back(std::move(s));
  } else if (name == "set") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseSet());
    out.push_back(std::move(s));
  } else if (name == "macro") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseMacro());
    out.push_back(std::move(s));
  } else if (name == "call") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseCallBlock());
    out.push_back(std::move(s));
  } else if (name == "filter" || name == "generation") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseFilterBlock(name == "generation"));
    out.push_back(std::move(s));
  } else if (name == "with") {
    ASSIGN_OR_RETURN(StmtPtr s, ParseWith());
    out.push_back(std::move(s));
  } else if (name == "print") {
    Next();
    while (Cur().kind != TokenKind::kBlockEnd) {
      if (!out.empty()) RETURN_IF_ERROR(ExpectOp(","));
      StmtPtr s = NewStmt(StmtKind::kPrint, Cur().loc);
      ASSIGN_OR_RETURN(s->expr, ParseExpression(true));
      out.push_back(std::move(s));
    }
  } else if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) return Fail(tag, StrCat("'", name, "' outside loop"));
    out.push_back(NewStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, tag.loc));
    Next();
  } else {
    for (std::string_view unsupported : kUnsupportedTags) {
      if (name == unsupported) {
        return Fail(tag, StrCat("the '", name, "' tag is not supported in chat templates"));
      }
    }
    return Fail(tag, StrCat("Encountered unknown tag '", name, "'."));
  }
  return out;
}

absl::StatusOr<StmtPtr> Parser::ParseFor() {
  StmtPtr s = NewStmt(StmtKind::kFor, Next().loc);
  ASSIGN_OR_RETURN(s->target, ParseAssignTarget(/*with_namespace=*/false, {"in"}));
  if (!SkipName("in")) return Fail(Cur(), StrCat("expected 'in', got ", Describe(Cur())));
  ASSIGN_OR_RETURN(s->expr,
                   ParseTuple(false, /*with_condexpr=*/false, {"recursive"}, false, false));
  if (SkipName("if")) {
    ASSIGN_OR_RETURN(s->condition, ParseExpression(true));
  }
  if (IsName(Cur(), "recursive")) return Fail(Cur(), "recursive for loops are not supported");
  ++loop_depth_;
  absl::StatusOr<StmtList> body = ParseStatements({"endfor", "else"}, false);
  --loop_depth_;
  if (!body.ok()) return body.status();
  s->body = std::move(*body);
  if (Next().text == "else") {
    int saved = loop_depth_;
    loop_depth_ = 0;  // like Python, break/continue in the else clause has no loop
    absl::StatusOr<StmtList> else_body = ParseStatements({"endfor"}, true);
    loop_depth_ = saved;
    if (!else_body.ok()) return else_body.status();
    s->else_body = std::move(*else_body);
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseIf() {
  StmtPtr s = NewStmt(StmtKind::kIf, Next().loc);
  while (true) {
    IfBranch branch;
    ASSIGN_OR_RETURN(branch.condition,
                     ParseTuple(false, /*with_condexpr=*/false, {}, false, false));
    ASSIGN_OR_RETURN(branch.body, ParseStatements({"elif", "else", "endif"}, false));
    s->branches.push_back(std::move(branch));
    const Token& t = Next();
    if (t.text == "elif") continue;
    if (t.text == "else") {
      ASSIGN_OR_RETURN(s->else_body, ParseStatements({"endif"}, true));
    }
    break;
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseSet() {
  SourceLocation loc = Next().loc;
  ASSIGN_OR_RETURN(AssignTarget target, ParseAssignTarget(/*with_namespace=*/true, {}));
  if (SkipOp("=")) {
    StmtPtr s = NewStmt(StmtKind::kSet, loc);
    s->target = std::move(target);
    ASSIGN_OR_RETURN(s->expr, ParseTuple(false, true, {}, false, false));
    return s;
  }
  StmtPtr s = NewStmt(StmtKind::kSetBlock, loc);
  s->target = std::move(target);
  if (IsOp(Cur(), "|")) {
    ASSIGN_OR_RETURN(s->expr, ParseFilter(nullptr, /*start_inline=*/false));
  }
  ASSIGN_OR_RETURN(s->body, ParseStatements({"endset"}, true));
  return s;
}

// Parses a macro or caller signature into `s->params`.
absl::Status Parser::ParseSignature(Stmt* s) {
  RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(Cur(), ")")) {
    if (!s->params.empty()) RETURN_IF_ERROR(ExpectOp(","));
    MacroParam p;
    ASSIGN_OR_RETURN(p.name, ExpectName());
    if (SkipOp("=")) {
      ASSIGN_OR_RETURN(p.default_value, ParseExpression(true));
    } else if (!s->params.empty() && s->params.back().default_value != nullptr) {
      return Fail(Cur(), "non-default argument follows default argument");
    }
    s->params.push_back(std::move(p));
  }
  return ExpectOp(")");
}

// Parses a macro-like body: no enclosing loop, and records whether it reads
// varargs / kwargs / caller.
absl::StatusOr<StmtList> Parser::ParseMacroBody(Stmt* s, std::string_view end_tag) {
  int saved_depth = loop_depth_;
  loop_depth_ = 0;
  macro_frames_.push_back(s);
  absl::StatusOr<StmtList> body = ParseStatements({end_tag}, true);
  macro_frames_.pop_back();
  loop_depth_ = saved_depth;
  return body;
}

absl::StatusOr<StmtPtr> Parser::ParseMacro() {
  StmtPtr s = NewStmt(StmtKind::kMacro, Next().loc);
  ASSIGN_OR_RETURN(s->name, ExpectName());
  RETURN_IF_ERROR(ParseSignature(s.get()));
  ASSIGN_OR_RETURN(s->body, ParseMacroBody(s.get(), "endmacro"));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseCallBlock() {
  StmtPtr s = NewStmt(StmtKind::kCallBlock, Next().loc);
  if (IsOp(Cur(), "(")) RETURN_IF_ERROR(ParseSignature(s.get()));
  const Token& at = Cur();
  ASSIGN_OR_RETURN(s->expr, ParseExpression(true));
  if (s->expr->kind != ExprKind::kCall) return Fail(at, "expected call");
  ASSIGN_OR_RETURN(s->body, ParseMacroBody(s.get(), "endcall"));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseFilterBlock(bool generation) {
  StmtPtr s = NewStmt(StmtKind::kFilterBlock, Next().loc);
  if (!generation) {
    ASSIGN_OR_RETURN(s->expr, ParseFilter(nullptr, /*start_inline=*/true));
  }
  ASSIGN_OR_RETURN(s->body, ParseStatements({generation ? "endgeneration" : "endfilter"}, true));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseWith() {
  StmtPtr s = NewStmt(StmtKind::kWith, Next().loc);
  while (Cur().kind != TokenKind::kBlockEnd) {
    if (!s->assignments.empty()) RETURN_IF_ERROR(ExpectOp(","));
    ASSIGN_OR_RETURN(AssignTarget target, ParseAssignTarget(false, {}));
    RETURN_IF_ERROR(ExpectOp("="));
    ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
    s->assignments.emplace_back(std::move(target), std::move(value));
  }
  ASSIGN_OR_RETURN(s->body, ParseStatements({"endwith"}, true));
  return s;
}

absl::StatusOr<AssignTarget> Parser::ParseAssignTarget(bool with_namespace, EndTags extra_end) {
  const Token& at = Cur();
  ASSIGN_OR_RETURN(ExprPtr e,
                   ParseTuple(/*simplified=*/true, true, extra_end, false, with_namespace));
  AssignTarget target;
  auto name_of = [](const Expr& x) -> const std::string* {
    return x.kind == ExprKind::kName ? &x.name : nullptr;
  };
  if (const std::string* n = name_of(*e)) {
    target.names.push_back(*n);
  } else if (e->kind == ExprKind::kGetAttr) {
    target.names.push_back(e->operands[0]->name);
    target.ns_attr = e->name;
  } else if (e->kind == ExprKind::kTuple) {
    target.is_tuple = true;
    for (const ExprPtr& item : e->operands) {
      const std::string* n = name_of(*item);
      if (n == nullptr) return Fail(at, "only names can be assigned in a tuple target");
      target.names.push_back(*n);
    }
  } else {
    return Fail(at, "can't assign to this expression");
  }
  for (const std::string& n : target.names) {
    if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None") {
      return Fail(at, StrCat("can't assign to '", n, "'"));
    }
  }
  return target;
}

absl::StatusOr<std::unique_ptr<Program>> ParseTemplate(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return Parser(std::move(tokens)).Run();
}

}  // namespace tokenfab::jinja
