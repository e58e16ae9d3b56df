// Syntax tree of a parsed chat template. Built once by the parser, immutable
// afterwards and shared by every Render call (any thread may read it).
#ifndef TOKENFAB_WORKER_CHAT_JINJA_AST_H_
#define TOKENFAB_WORKER_CHAT_JINJA_AST_H_

#include <memory>
#include <string>
#include <vector>

#include "worker/chat/jinja_lexer.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct KeywordArg {
  std::string name;
  ExprPtr value;
};

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // operands: items
  kTuple,     // operands: items
  kDict,      // operands: key0, value0, key1, value1, ...
  kGetAttr,   // operands[0].name
  kGetItem,   // operands[0][operands[1]]
  kSlice,     // operands[0][operands[1]:operands[2]:operands[3]]; bounds may be null
  kNeg,       // -operands[0]
  kPos,       // +operands[0]
  kNot,       // not operands[0]
  kBinary,    // operands[0] <name> operands[1]; name is + - * / // % **
  kConcat,    // operands joined with ~
  kAnd,       // operands[0] and operands[1]
  kOr,        // operands[0] or operands[1]
  kCompare,   // operands[0] compare_ops[0] operands[1] compare_ops[1] operands[2] ...
  kCondExpr,  // operands[0] if operands[1] else operands[2]; operands[2] may be null
  kCall,      // operands[0](operands[1..], keywords)
  kFilter,    // operands[0] | name(operands[1..], keywords); operands[0] null in a filter block
  kTest,      // operands[0] is name(operands[1..], keywords)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  SourceLocation loc;
  Value literal;
  std::string name;
  std::vector<ExprPtr> operands;
  std::vector<KeywordArg> keywords;
  std::vector<std::string> compare_ops;  // == != < <= > >= in notin
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

// Left side of set / for / with: one name, a tuple of names, or ns.attr.
struct AssignTarget {
  std::vector<std::string> names;
  bool is_tuple = false;
  std::string ns_attr;  // non-empty: assign names[0].ns_attr
};

struct IfBranch {
  ExprPtr condition;
  StmtList body;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

enum class StmtKind {
  kText,         // text
  kPrint,        // {{ expr }}
  kIf,           // branches, else_body
  kFor,          // for target in expr [if condition]: body [else: else_body]
  kSet,          // set target = expr
  kSetBlock,     // set target [| filters]: body; expr is the filter chain or null
  kMacro,        // macro name(params): body
  kCallBlock,    // call(params) expr: body; the body is `caller`
  kFilterBlock,  // filter expr: body (also {% generation %}, with expr null)
  kWith,         // with assignments: body
  kBreak,
  kContinue,
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  SourceLocation loc;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;
  AssignTarget target;
  std::vector<IfBranch> branches;
  StmtList body;
  StmtList else_body;
  std::string name;
  std::vector<MacroParam> params;
  std::vector<std::pair<AssignTarget, ExprPtr>> assignments;  // kWith
  // Macro (and call block caller) bodies that read these names accept extra
  // positional / keyword arguments or a caller, as jinja2 decides.
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

struct Program {
  StmtList body;
};

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_AST_H_
