// Expression evaluation of the chat template interpreter.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_filters.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_renderer.h"
#include "worker/chat/jinja_tests.h"

namespace tokenfab::jinja {
namespace {

absl::Status TooDeep() {
  return absl::InvalidArgumentError(
      StrCat("lists and dicts nested more than ", kMaxValueDepth, " levels deep"));
}

}  // namespace

absl::StatusOr<Value> Renderer::Eval(const Expr& expr, const ScopePtr& scope) {
  absl::StatusOr<Value> v = EvalUnlocated(expr, scope);
  if (!v.ok()) return AtLocation(v.status(), expr.loc);
  return v;
}

absl::StatusOr<Value> Renderer::Lookup(std::string_view name, const ScopePtr& scope) const {
  if (const Value* v = scope->Find(name)) return *v;
  return Value::Undefined(StrCat("'", name, "' is undefined"));
}

absl::StatusOr<CallArgs> Renderer::EvalArgs(const Expr& expr, size_t first, const ScopePtr& scope) {
  CallArgs args;
  for (size_t i = first; i < expr.operands.size(); ++i) {
    ASSIGN_OR_RETURN(Value v, Eval(*expr.operands[i], scope));
    args.positional.push_back(std::move(v));
  }
  for (const KeywordArg& kw : expr.keywords) {
    ASSIGN_OR_RETURN(Value v, Eval(*kw.value, scope));
    args.keyword.emplace_back(kw.name, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Renderer::ApplyFilterChain(const Expr& chain, Value input,
                                                 const ScopePtr& scope) {
  if (chain.operands[0] != nullptr) {
    ASSIGN_OR_RETURN(input, ApplyFilterChain(*chain.operands[0], std::move(input), scope));
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(chain, 1, scope));
  absl::StatusOr<Value> v = ApplyFilter(chain.name, input, args);
  if (!v.ok()) return AtLocation(v.status(), chain.loc);
  return v;
}

absl::StatusOr<Value> Renderer::EvalUnlocated(const Expr& expr, const ScopePtr& scope) {
  const std::vector<ExprPtr>& ops = expr.operands;
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName:
      return Lookup(expr.name, scope);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(ops.size());
      for (const ExprPtr& op : ops) {
        ASSIGN_OR_RETURN(Value v, Eval(*op, scope));
        items.push_back(std::move(v));
      }
      Value seq = Value::Seq(std::move(items),
                             expr.kind == ExprKind::kList ? SeqKind::kList : SeqKind::kTuple);
      if (seq.depth() > kMaxValueDepth) return TooDeep();
      return seq;
    }
    case ExprKind::kDict: {
      Dict dict;
      for (size_t i = 0; i + 1 < ops.size(); i += 2) {
        ASSIGN_OR_RETURN(Value k, Eval(*ops[i], scope));
        ASSIGN_OR_RETURN(Value v, Eval(*ops[i + 1], scope));
        if (k.is_dict() || (k.is_sequence() && k.as_seq().kind != SeqKind::kTuple)) {
          return absl::InvalidArgumentError(StrCat("unhashable type: '", PyTypeName(k), "'"));
        }
        dict.Set(std::move(k), std::move(v));
      }
      Value made = Value::MakeDict(std::move(dict));
      if (made.depth() > kMaxValueDepth) return TooDeep();
      return made;
    }
    case ExprKind::kGetAttr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*ops[0], scope));
      return GetAttr(obj, expr.name);
    }
    case ExprKind::kGetItem: {
      ASSIGN_OR_RETURN(Value obj, Eval(*ops[0], scope));
      ASSIGN_OR_RETURN(Value key, Eval(*ops[1], scope));
      return GetItem(obj, key);
    }
    case ExprKind::kSlice: {
      ASSIGN_OR_RETURN(Value obj, Eval(*ops[0], scope));
      Value bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (ops[i + 1] != nullptr) {
          ASSIGN_OR_RETURN(bounds[i], Eval(*ops[i + 1], scope));
        }
      }
      return SliceValue(obj, bounds[0], bounds[1], bounds[2]);
    }
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      ASSIGN_OR_RETURN(Value v, Eval(*ops[0], scope));
      return expr.kind == ExprKind::kNeg ? UnaryMinus(v) : UnaryPlus(v);
    }
    case ExprKind::kNot: {
      ASSIGN_OR_RETURN(Value v, Eval(*ops[0], scope));
      return Value::Bool(!Truthy(v));
    }
    case ExprKind::kBinary: {
      ASSIGN_OR_RETURN(Value a, Eval(*ops[0], scope));
      ASSIGN_OR_RETURN(Value b, Eval(*ops[1], scope));
      return BinaryOp(expr.name, a, b);
    }
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& op : ops) {
        ASSIGN_OR_RETURN(Value v, Eval(*op, scope));
        ASSIGN_OR_RETURN(std::string s, PyStr(v));
        out.append(s);
        if (static_cast<int64_t>(out.size()) > kMaxBuiltSize) {
          return absl::ResourceExhaustedError("string concatenation result too large");
        }
      }
      return Value::Str(std::move(out));
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      ASSIGN_OR_RETURN(Value a, Eval(*ops[0], scope));
      if (Truthy(a) == (expr.kind == ExprKind::kOr)) return a;
      return Eval(*ops[1], scope);
    }
    case ExprKind::kCompare: {
      ASSIGN_OR_RETURN(Value left, Eval(*ops[0], scope));
      for (size_t i = 0; i < expr.compare_ops.size(); ++i) {
        ASSIGN_OR_RETURN(Value right, Eval(*ops[i + 1], scope));
        ASSIGN_OR_RETURN(bool holds, CompareOp(expr.compare_ops[i], left, right));
        if (!holds) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case ExprKind::kCondExpr: {
      ASSIGN_OR_RETURN(Value cond, Eval(*ops[1], scope));
      if (Truthy(cond)) return Eval(*ops[0], scope);
      if (ops[2] != nullptr) return Eval(*ops[2], scope);
      return Value::Undefined(StrCat("the inline if-expression on line ", expr.loc.line,
                                     " evaluated to false and no else section was defined."));
    }
    case ExprKind::kCall: {
      ASSIGN_OR_RETURN(Value callee, Eval(*ops[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return CallValue(callee, args);
    }
    case ExprKind::kFilter: {
      ASSIGN_OR_RETURN(Value input, Eval(*ops[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return ApplyFilter(expr.name, input, args);
    }
    case ExprKind::kTest: {
      ASSIGN_OR_RETURN(Value input, Eval(*ops[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      ASSIGN_OR_RETURN(bool result, ApplyTest(expr.name, input, args));
      return Value::Bool(result);
    }
  }
  return absl::InternalError("unknown expression");
}

}  // namespace tokenfab::jinja
