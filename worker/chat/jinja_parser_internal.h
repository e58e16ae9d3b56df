// Internal to the parser: the recursive-descent Parser class, whose
// statement rules live in jinja_parser.cc and expression rules in
// jinja_expr_parser.cc. One Parser parses one template, on one thread.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_PARSER_INTERNAL_H_
#define TOKENFAB_WORKER_CHAT_JINJA_PARSER_INTERNAL_H_

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_ast.h"
#include "worker/chat/jinja_lexer.h"

namespace tokenfab::jinja {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<std::unique_ptr<Program>> Run() {
    auto program = std::make_unique<Program>();
    ASSIGN_OR_RETURN(program->body, Subparse({}));
    return program;
  }

 private:
  using EndTags = std::initializer_list<std::string_view>;

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Look() const { return tokens_[pos_ + 1 < tokens_.size() ? pos_ + 1 : pos_]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  static bool IsName(const Token& t, std::string_view name) {
    return t.kind == TokenKind::kName && t.text == name;
  }
  static bool IsOp(const Token& t, std::string_view op) {
    return t.kind == TokenKind::kOperator && t.text == op;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(Cur(), name)) return false;
    Next();
    return true;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(Cur(), op)) return false;
    Next();
    return true;
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kVariableEnd:
        return "end of print statement";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kVariableBegin:
        return "begin of print statement";
      case TokenKind::kBlockBegin:
        return "begin of statement block";
      case TokenKind::kEof:
        return "end of template";
      case TokenKind::kData:
        return "template data";
      case TokenKind::kString:
        return "string";
      default:
        return StrCat("'", t.text, "'");
    }
  }

  absl::Status Fail(const Token& at, std::string_view message) const {
    return absl::InvalidArgumentError(LocatedMessage(at.loc, message));
  }
  absl::Status Unexpected(const Token& t) const {
    return Fail(t, StrCat("unexpected ", Describe(t)));
  }

  absl::Status ExpectOp(std::string_view op) {
    if (!IsOp(Cur(), op)) {
      return Fail(Cur(), StrCat("expected token '", op, "', got ", Describe(Cur())));
    }
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectKind(TokenKind kind, std::string_view what) {
    if (Cur().kind != kind)
      return Fail(Cur(), StrCat("expected ", what, ", got ", Describe(Cur())));
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().kind != TokenKind::kName) {
      return Fail(Cur(), StrCat("expected a name, got ", Describe(Cur())));
    }
    return Next().text;
  }

  static ExprPtr NewExpr(ExprKind kind, SourceLocation loc) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->loc = loc;
    return e;
  }
  static StmtPtr NewStmt(StmtKind kind, SourceLocation loc) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->loc = loc;
    return s;
  }

  // ---- Statements (jinja_parser.cc) ----
  absl::StatusOr<StmtList> Subparse(EndTags end_tags);
  absl::StatusOr<StmtList> ParseStatements(EndTags end_tags, bool drop_needle);
  absl::StatusOr<StmtList> ParseStatement();
  absl::StatusOr<StmtList> ParseStatementUnguarded();
  absl::StatusOr<StmtPtr> ParseFor();
  absl::StatusOr<StmtPtr> ParseIf();
  absl::StatusOr<StmtPtr> ParseSet();
  // Parses a macro or caller signature into `s->params`.
  absl::Status ParseSignature(Stmt* s);
  // Parses a macro-like body: no enclosing loop, and records whether it reads
  // varargs / kwargs / caller.
  absl::StatusOr<StmtList> ParseMacroBody(Stmt* s, std::string_view end_tag);
  absl::StatusOr<StmtPtr> ParseMacro();
  absl::StatusOr<StmtPtr> ParseCallBlock();
  absl::StatusOr<StmtPtr> ParseFilterBlock(bool generation);
  absl::StatusOr<StmtPtr> ParseWith();
  absl::StatusOr<AssignTarget> ParseAssignTarget(bool with_namespace, EndTags extra_end);

  // ---- Expressions, in jinja2's precedence order (jinja_expr_parser.cc) ----
  absl::StatusOr<ExprPtr> ParseTuple(bool simplified, bool with_condexpr, EndTags extra_end,
                                     bool explicit_parentheses, bool with_namespace);
  bool IsTupleEnd(EndTags extra_end) const;
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  absl::StatusOr<ExprPtr> ParseExpressionUnguarded(bool with_condexpr);
  absl::StatusOr<ExprPtr> ParseCondExpr();
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseNotUnguarded();
  absl::StatusOr<ExprPtr> ParseCompare();
  static ExprPtr Binary(ExprKind kind, std::string op, SourceLocation loc, ExprPtr a, ExprPtr b);
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParseUnaryUnguarded(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary(bool with_namespace);
  absl::StatusOr<ExprPtr> ParseListOrDict();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  // Appends the call arguments `( ... )` to e->operands / e->keywords.
  absl::Status ParseCallArgs(Expr* e);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<std::string> ParseDottedName();
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node);
  void NoteNameUse(std::string_view name);

  // Guards recursion: expressions and blocks nested deeper than
  // kMaxNesting fail to parse instead of exhausting the stack.
  static constexpr int kMaxNesting = 200;
  absl::Status Enter() {
    if (++nesting_ > kMaxNesting) return Fail(Cur(), "the template nests too deeply");
    return absl::OkStatus();
  }
  void Leave() { --nesting_; }

  std::vector<Token> tokens_;
  int nesting_ = 0;
  size_t pos_ = 0;
  int loop_depth_ = 0;
  std::vector<Stmt*> macro_frames_;
};

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_PARSER_INTERNAL_H_
