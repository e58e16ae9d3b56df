// Statement execution of the chat template interpreter.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_interpreter.h"
#include "worker/chat/jinja_lexer.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_renderer.h"

namespace tokenfab::jinja {
namespace {

constexpr char kLocatedPayload[] = "tokenfab.jinja/located";

}  // namespace

const Value* Scope::Find(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
    for (const auto& [k, v] : s->vars_) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) {
  for (auto& [k, v] : vars_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

absl::Status AtLocation(absl::Status status, SourceLocation loc) {
  if (status.ok() || IsRaisedByTemplate(status) || status.GetPayload(kLocatedPayload))
    return status;
  absl::Status located(status.code(), LocatedMessage(loc, std::string(status.message())));
  located.SetPayload(kLocatedPayload, absl::Cord("1"));
  return located;
}

Renderer::~Renderer() {
  // Break cycles a template may have built, e.g. {% set ns.me = ns %}.
  for (const std::weak_ptr<Namespace>& weak : namespaces_) {
    if (std::shared_ptr<Namespace> ns = weak.lock()) ns->attrs.clear();
  }
}

absl::Status Renderer::Run(const Program& program, const Value& context, std::string* out) {
  globals_ = std::make_shared<Scope>(nullptr);
  for (auto& [name, fn] : MakeGlobals(now_, &namespaces_)) globals_->Set(name, std::move(fn));
  auto root = std::make_shared<Scope>(globals_);
  if (!context.is_dict())
    return absl::InvalidArgumentError("the template context must be an object");
  for (const auto& [k, v] : context.as_dict().entries) {
    if (!k.is_string()) return absl::InvalidArgumentError("template context keys must be strings");
    root->Set(k.as_string(), v);
  }
  Flow flow = Flow::kNormal;
  return ExecBody(program.body, root, out, &flow);
}

absl::Status Renderer::Step() {
  if (++steps_ > kMaxRenderSteps) {
    return absl::ResourceExhaustedError(
        StrCat("the template ran more than ", kMaxRenderSteps, " loop iterations and macro calls"));
  }
  return absl::OkStatus();
}

absl::Status Renderer::Append(std::string_view text, std::string* out) {
  if (out->size() + text.size() > kMaxRenderedBytes) {
    return absl::ResourceExhaustedError(
        StrCat("the rendered template exceeds ", kMaxRenderedBytes, " bytes"));
  }
  out->append(text);
  return absl::OkStatus();
}

absl::Status Renderer::ExecBody(const StmtList& body, const ScopePtr& scope, std::string* out,
                                Flow* flow) {
  for (const StmtPtr& stmt : body) {
    RETURN_IF_ERROR(Exec(*stmt, scope, out, flow));
    if (*flow != Flow::kNormal) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Renderer::Capture(const StmtList& body, const ScopePtr& scope,
                                              Flow* flow) {
  std::string text;
  RETURN_IF_ERROR(ExecBody(body, std::make_shared<Scope>(scope), &text, flow));
  return text;
}

absl::Status Renderer::Assign(const AssignTarget& target, const Value& value,
                              const ScopePtr& scope) {
  // Values that outlive a statement are where nesting can grow without bound
  // (e.g. {% set ns.x = [ns.x] %} in a loop), so the depth is checked here.
  if (value.depth() > kMaxValueDepth) {
    return absl::InvalidArgumentError(
        StrCat("a value nested more than ", kMaxValueDepth, " levels deep cannot be assigned"));
  }
  if (!target.ns_attr.empty()) {
    const Value* ns = scope->Find(target.names[0]);
    if (ns == nullptr || !ns->is_namespace()) {
      return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
    }
    ns->as_namespace().Set(target.ns_attr, value);
    return absl::OkStatus();
  }
  if (!target.is_tuple) {
    scope->Set(target.names[0], value);
    return absl::OkStatus();
  }
  if (!value.is_string() && !value.is_sequence() && !value.is_dict() && !value.is_undefined()) {
    return absl::InvalidArgumentError(
        StrCat("cannot unpack non-iterable ", PyTypeName(value), " object"));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  size_t want = target.names.size();
  if (items.size() < want) {
    return absl::InvalidArgumentError(
        StrCat("not enough values to unpack (expected ", want, ", got ", items.size(), ")"));
  }
  if (items.size() > want) {
    return absl::InvalidArgumentError(StrCat("too many values to unpack (expected ", want, ")"));
  }
  for (size_t i = 0; i < want; ++i) scope->Set(target.names[i], items[i]);
  return absl::OkStatus();
}

absl::Status Renderer::Exec(const Stmt& stmt, const ScopePtr& scope, std::string* out, Flow* flow) {
  absl::Status status;
  switch (stmt.kind) {
    case StmtKind::kText:
      return Append(stmt.text, out);
    case StmtKind::kPrint: {
      ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      absl::StatusOr<std::string> s = PyStr(v);
      if (!s.ok()) return AtLocation(s.status(), stmt.loc);
      return Append(*s, out);
    }
    case StmtKind::kIf:
      for (const IfBranch& branch : stmt.branches) {
        ASSIGN_OR_RETURN(Value cond, Eval(*branch.condition, scope));
        if (Truthy(cond)) return ExecBody(branch.body, scope, out, flow);
      }
      return ExecBody(stmt.else_body, scope, out, flow);
    case StmtKind::kFor:
      return ExecFor(stmt, scope, out);
    case StmtKind::kSet: {
      ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      return AtLocation(Assign(stmt.target, v, scope), stmt.loc);
    }
    case StmtKind::kSetBlock: {
      // jinja2 compiles the body inline, so a break/continue in it leaves the
      // enclosing loop at once, skipping the assignment.
      ASSIGN_OR_RETURN(std::string text, Capture(stmt.body, scope, flow));
      if (*flow != Flow::kNormal) return absl::OkStatus();
      Value v = Value::Str(std::move(text));
      if (stmt.expr != nullptr) {
        ASSIGN_OR_RETURN(v, ApplyFilterChain(*stmt.expr, std::move(v), scope));
      }
      return AtLocation(Assign(stmt.target, v, scope), stmt.loc);
    }
    case StmtKind::kMacro:
      scope->Set(stmt.name, MakeMacro(stmt, scope, stmt.name));
      return absl::OkStatus();
    case StmtKind::kCallBlock:
      return ExecCallBlock(stmt, scope, out);
    case StmtKind::kFilterBlock: {
      ASSIGN_OR_RETURN(std::string text, Capture(stmt.body, scope, flow));
      if (*flow != Flow::kNormal) return absl::OkStatus();  // as for kSetBlock
      Value v = Value::Str(std::move(text));
      if (stmt.expr != nullptr) {
        ASSIGN_OR_RETURN(v, ApplyFilterChain(*stmt.expr, std::move(v), scope));
      }
      absl::StatusOr<std::string> s = PyStr(v);
      if (!s.ok()) return AtLocation(s.status(), stmt.loc);
      return Append(*s, out);
    }
    case StmtKind::kWith: {
      auto inner = std::make_shared<Scope>(scope);
      std::vector<Value> values;
      for (const auto& [target, expr] : stmt.assignments) {
        ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
        values.push_back(std::move(v));
      }
      for (size_t i = 0; i < values.size(); ++i) {
        RETURN_IF_ERROR(AtLocation(Assign(stmt.assignments[i].first, values[i], inner), stmt.loc));
      }
      return ExecBody(stmt.body, inner, out, flow);
    }
    case StmtKind::kBreak:
      *flow = Flow::kBreak;
      return absl::OkStatus();
    case StmtKind::kContinue:
      *flow = Flow::kContinue;
      return absl::OkStatus();
  }
  return absl::InternalError("unknown statement");
}

absl::Status Renderer::ExecFor(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr, scope));
  absl::StatusOr<std::vector<Value>> all = Iterate(iterable);
  if (!all.ok()) return AtLocation(all.status(), stmt.expr->loc);
  auto items = std::make_shared<Sequence>();
  if (stmt.condition == nullptr) {
    items->items = std::move(*all);
  } else {
    // `for x in xs if cond` filters first: loop.index and loop.length count kept items only.
    for (Value& item : *all) {
      RETURN_IF_ERROR(AtLocation(Step(), stmt.loc));
      auto probe = std::make_shared<Scope>(scope);
      RETURN_IF_ERROR(AtLocation(Assign(stmt.target, item, probe), stmt.loc));
      ASSIGN_OR_RETURN(Value keep, Eval(*stmt.condition, probe));
      if (Truthy(keep)) items->items.push_back(std::move(item));
    }
  }
  std::shared_ptr<const Sequence> shared = items;
  int64_t length = static_cast<int64_t>(shared->items.size());
  // jinja2 clears its "run the else block" flag at the end of the loop body,
  // so the else block also runs when every iteration ended in break/continue.
  bool completed_an_iteration = false;
  for (int64_t i = 0; i < length; ++i) {
    // Each iteration is a fresh frame: a {% set %} in the body does not
    // survive into the next iteration or out of the loop.
    RETURN_IF_ERROR(AtLocation(Step(), stmt.loc));
    auto frame = std::make_shared<Scope>(scope);
    RETURN_IF_ERROR(AtLocation(Assign(stmt.target, shared->items[i], frame), stmt.loc));
    frame->Set("loop", Value::Loop(LoopState{i, length, shared}));
    Flow flow = Flow::kNormal;
    RETURN_IF_ERROR(ExecBody(stmt.body, frame, out, &flow));
    if (flow == Flow::kNormal) completed_an_iteration = true;
    if (flow == Flow::kBreak) break;
  }
  if (completed_an_iteration || stmt.else_body.empty()) return absl::OkStatus();
  Flow flow = Flow::kNormal;
  return ExecBody(stmt.else_body, std::make_shared<Scope>(scope), out, &flow);
}

Value Renderer::MakeMacro(const Stmt& stmt, const ScopePtr& scope, const std::string& name) {
  // The macro usually lives in the scope it closes over; holding that scope
  // weakly (and strongly here, until the render ends) avoids a reference cycle.
  retained_scopes_.push_back(scope);
  std::weak_ptr<Scope> weak = scope;
  const Stmt* def = &stmt;
  return Value::Function(StrCat("macro ", name),
                         [this, def, weak, name](const CallArgs& args) -> absl::StatusOr<Value> {
                           ScopePtr closure = weak.lock();
                           if (closure == nullptr)
                             return absl::InternalError("macro scope expired");
                           return CallMacro(*def, closure, name, args);
                         });
}

absl::StatusOr<Value> Renderer::CallMacro(const Stmt& stmt, const ScopePtr& closure,
                                          std::string_view name, const CallArgs& args) {
  if (call_depth_ >= kMaxCallDepth) {
    return absl::ResourceExhaustedError("maximum recursion depth exceeded in macro calls");
  }
  RETURN_IF_ERROR(Step());
  auto frame = std::make_shared<Scope>(closure);
  size_t n_params = stmt.params.size();
  std::vector<std::optional<Value>> bound(n_params);
  std::vector<Value> varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n_params) {
      bound[i] = args.positional[i];
    } else if (stmt.uses_varargs) {
      varargs.push_back(args.positional[i]);
    } else {
      return absl::InvalidArgumentError(
          StrCat("macro '", name, "' takes not more than ", n_params, " argument(s)"));
    }
  }
  Dict kwargs;
  for (const auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < n_params && stmt.params[i].name != key) ++i;
    if (i < n_params) {
      if (bound[i]) {
        return absl::InvalidArgumentError(
            StrCat("macro '", name, "' got multiple values for argument '", key, "'"));
      }
      bound[i] = value;
    } else if (key == "caller" && stmt.uses_caller) {
      frame->Set("caller", value);
    } else if (stmt.uses_kwargs) {
      kwargs.Set(Value::Str(key), value);
    } else {
      return absl::InvalidArgumentError(
          StrCat("macro '", name, "' takes no keyword argument '", key, "'"));
    }
  }
  // Defaults are evaluated in the macro's frame, in order, so they can use earlier parameters.
  for (size_t i = 0; i < n_params; ++i) {
    const MacroParam& p = stmt.params[i];
    if (bound[i]) {
      frame->Set(p.name, *bound[i]);
    } else if (p.default_value != nullptr) {
      ASSIGN_OR_RETURN(Value v, Eval(*p.default_value, frame));
      frame->Set(p.name, std::move(v));
    } else {
      frame->Set(p.name, Value::Undefined(StrCat("parameter '", p.name, "' was not provided")));
    }
  }
  if (stmt.uses_varargs) frame->Set("varargs", Value::Seq(std::move(varargs), SeqKind::kTuple));
  if (stmt.uses_kwargs) frame->Set("kwargs", Value::MakeDict(std::move(kwargs)));
  if (stmt.uses_caller && frame->Find("caller") == nullptr) {
    frame->Set("caller", Value::Undefined("No caller defined"));
  }
  ++call_depth_;
  std::string text;
  Flow flow = Flow::kNormal;
  absl::Status status = ExecBody(stmt.body, frame, &text, &flow);
  --call_depth_;
  RETURN_IF_ERROR(status);
  return Value::Str(std::move(text));
}

absl::Status Renderer::ExecCallBlock(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
  const Expr& call = *stmt.expr;
  ASSIGN_OR_RETURN(Value callee, Eval(*call.operands[0], scope));
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, scope));
  args.keyword.emplace_back("caller", MakeMacro(stmt, scope, "caller"));
  absl::StatusOr<Value> result = CallValue(callee, args);
  if (!result.ok()) return AtLocation(result.status(), call.loc);
  absl::StatusOr<std::string> s = PyStr(*result);
  if (!s.ok()) return AtLocation(s.status(), stmt.loc);
  return Append(*s, out);
}

absl::StatusOr<std::string> RenderProgram(const Program& program, const Value& context, Clock now) {
  Renderer renderer(std::move(now));
  std::string out;
  RETURN_IF_ERROR(renderer.Run(program, context, &out));
  return out;
}

}  // namespace tokenfab::jinja
