// Status propagation helpers. Abseil 20220623 (Debian 12) ships StatusOr but no
// macros, so the project defines its own. Every fallible call across a folder
// boundary returns absl::Status or absl::StatusOr<T>; exceptions never cross one.
#ifndef TOKENFAB_COMMON_STATUS_MACROS_H_
#define TOKENFAB_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TOKENFAB_CONCAT_INNER_(a, b) a##b
#define TOKENFAB_CONCAT_(a, b) TOKENFAB_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status tokenfab_status_ = (expr);         \
    if (!tokenfab_status_.ok()) return tokenfab_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns x from a StatusOr or
// returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  TOKENFAB_ASSIGN_OR_RETURN_IMPL_(TOKENFAB_CONCAT_(tokenfab_statusor_, __LINE__), lhs, expr)

#define TOKENFAB_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                                    \
  if (!var.ok()) return std::move(var).status();        \
  lhs = std::move(var).value()

#endif  // TOKENFAB_COMMON_STATUS_MACROS_H_
