// Internal to the interpreter: the per-render state and its scopes, shared by
// jinja_exec.cc (statements) and jinja_eval.cc (expressions).
#ifndef TOKENFAB_WORKER_CHAT_JINJA_RENDERER_H_
#define TOKENFAB_WORKER_CHAT_JINJA_RENDERER_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_ast.h"
#include "worker/chat/jinja_globals.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

// Variables of one jinja2 frame; lookups fall through to the parent.
// Shared because macros keep the scope they were defined in.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}

  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  std::shared_ptr<Scope> parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

// Prefixes `status` with the line and column, once (the innermost location
// wins); raise_exception() errors stay as the template wrote them.
absl::Status AtLocation(absl::Status status, SourceLocation loc);

class Renderer {
 public:
  explicit Renderer(Clock now) : now_(std::move(now)) {}
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  absl::Status Run(const Program& program, const Value& context, std::string* out);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  // Statements (jinja_exec.cc).
  absl::Status ExecBody(const StmtList& body, const ScopePtr& scope, std::string* out, Flow* flow);
  absl::Status Exec(const Stmt& stmt, const ScopePtr& scope, std::string* out, Flow* flow);
  absl::Status ExecFor(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  absl::Status ExecCallBlock(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  // Renders `body` in a new child scope of `scope`; a break/continue in it
  // is reported through `flow`.
  absl::StatusOr<std::string> Capture(const StmtList& body, const ScopePtr& scope, Flow* flow);
  absl::Status Assign(const AssignTarget& target, const Value& value, const ScopePtr& scope);
  absl::Status Append(std::string_view text, std::string* out);
  // A macro (or call-block caller) defined by `stmt`, closing over `scope`.
  Value MakeMacro(const Stmt& stmt, const ScopePtr& scope, const std::string& name);
  absl::StatusOr<Value> CallMacro(const Stmt& stmt, const ScopePtr& closure, std::string_view name,
                                  const CallArgs& args);

  // Expressions (jinja_eval.cc).
  absl::StatusOr<Value> Eval(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalUnlocated(const Expr& expr, const ScopePtr& scope);
  // Arguments from expr.operands[first..] and expr.keywords.
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first, const ScopePtr& scope);
  absl::StatusOr<Value> Lookup(std::string_view name, const ScopePtr& scope) const;
  // Applies a filter chain whose innermost input is `input` (filter blocks).
  absl::StatusOr<Value> ApplyFilterChain(const Expr& chain, Value input, const ScopePtr& scope);

  // Counts a loop iteration or macro call against kMaxRenderSteps.
  absl::Status Step();

  Clock now_;
  ScopePtr globals_;
  int call_depth_ = 0;
  int64_t steps_ = 0;
  std::vector<ScopePtr> retained_scopes_;             // scopes that macros close over
  std::vector<std::weak_ptr<Namespace>> namespaces_;  // created by namespace()
};

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_RENDERER_H_
