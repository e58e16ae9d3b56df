#include "server/auth.h"

#include <atomic>
#include <cstdlib>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "grpcpp/support/client_interceptor.h"
#include "openssl/crypto.h"
#include "openssl/rand.h"

namespace tokenfab {
namespace {

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kMaxKeyFileBytes = 1 << 20;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Adds the bearer key to a call's initial metadata.
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(std::string value) : value_(std::move(value)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", value_);
    }
    methods->Proceed();
  }

 private:
  const std::string value_;
};

// One interceptor a call, with the key the set holds when the call starts.
class BearerInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(KeySet keys) : keys_(std::move(keys)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(StrCat("Bearer ", keys_.first()));  // gRPC owns it for the call
  }

 private:
  const KeySet keys_;
};

// The keys of a file's text (one a line, '#' comments); errors name
// `source` and the line, never a key.
absl::StatusOr<std::vector<std::string>> ParseKeys(std::string_view text, std::string_view source) {
  if (text.size() > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(
        StrCat(source, ": larger than ", kMaxKeyFileBytes, " bytes; expected keys, one a line"));
  }
  std::vector<std::string> keys;
  int line_number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = Trim(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat(source, " line ", line_number, ": ", why));
    };
    if (line.size() > kMaxKeyBytes) return bad(StrCat("a key is at most ", kMaxKeyBytes, " bytes"));
    for (char c : line) {
      if (c < 0x21 || c > 0x7e) return bad("a key is visible ASCII, with no spaces inside");
    }
    keys.emplace_back(line);
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(StrCat(source, ": no key in it (one a line, '#' comments)"));
  }
  return keys;
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& file, std::string_view flag) {
  absl::StatusOr<std::string> text = ReadFileToString(file, kMaxKeyFileBytes);
  if (!text.ok())
    return absl::InvalidArgumentError(StrCat("--", flag, ": ", text.status().message()));
  return text;
}

}  // namespace

struct KeySet::State {
  std::string source;  // as errors and logs name it
  std::string file;    // the file Reload re-reads; empty: none
  std::string flag;    // the file's flag
  // One Reload at a time (a read and its outcome), so an older read never
  // lands after a newer one; taken before mu.
  absl::Mutex reload_mu;
  ReloadedFile seen_file ABSL_GUARDED_BY(reload_mu);
  mutable absl::Mutex mu;
  std::vector<std::string> keys ABSL_GUARDED_BY(mu);  // never empty
  int64_t reloads ABSL_GUARDED_BY(mu) = 0;
  int64_t reload_errors ABSL_GUARDED_BY(mu) = 0;
  bool file_refused ABSL_GUARDED_BY(mu) = false;
  std::atomic<int64_t> refused_missing{0};
  std::atomic<int64_t> refused_invalid{0};
};

KeySet KeySet::Of(std::vector<std::string> keys, std::string source) {
  KeySet set;
  set.state_ = std::make_shared<State>();
  set.state_->source = std::move(source);
  absl::MutexLock lock(&set.state_->mu);
  set.state_->keys = std::move(keys);
  return set;
}

absl::StatusOr<KeySet> KeySet::Parse(std::string_view text, std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<std::string> keys, ParseKeys(text, source));
  return Of(std::move(keys), std::string(source));
}

absl::StatusOr<KeySet> KeySet::Load(const std::string& file, std::string_view flag,
                                    const char* env) {
  if (!file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadKeyFile(file, flag));
    ASSIGN_OR_RETURN(KeySet set, Parse(text, StrCat("--", flag, " ", file)));
    set.state_->file = file;
    set.state_->flag = flag;
    absl::MutexLock lock(&set.state_->reload_mu);
    set.state_->seen_file = ReloadedFile(std::move(text));
    return set;
  }
  if (const char* value = std::getenv(env); value != nullptr && *value != '\0') {
    return Parse(value, StrCat("$", env));
  }
  return KeySet();
}

KeySet KeySet::Random() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no entropy: nothing is safe
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key;
  for (unsigned char b : bytes) {
    key.push_back(kHex[b >> 4]);
    key.push_back(kHex[b & 15]);
  }
  return Of({std::move(key)}, "");
}

std::string KeySet::first() const {
  if (open()) return "";
  absl::ReaderMutexLock lock(&state_->mu);
  return state_->keys.front();
}

bool KeySet::Admits(std::string_view authorization) const {
  if (open()) return true;
  authorization = Trim(authorization);
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c) != kScheme[i]) return false;
  }
  const std::string_view presented = Trim(authorization.substr(kScheme.size()));
  // Every key is compared, each in constant time for its length.
  bool admitted = false;
  absl::ReaderMutexLock lock(&state_->mu);
  for (const std::string& key : state_->keys) {
    admitted |= key.size() == presented.size() &&
                CRYPTO_memcmp(key.data(), presented.data(), key.size()) == 0;
  }
  return admitted;
}

KeyCheck KeySet::Check(std::string_view authorization) const {
  if (open()) return KeyCheck::kAdmitted;
  if (Trim(authorization).empty()) {
    state_->refused_missing.fetch_add(1, std::memory_order_relaxed);
    return KeyCheck::kMissing;
  }
  if (!Admits(authorization)) {
    state_->refused_invalid.fetch_add(1, std::memory_order_relaxed);
    return KeyCheck::kInvalid;
  }
  return KeyCheck::kAdmitted;
}

absl::StatusOr<bool> KeySet::Reload(ReloadWhen when) const {
  if (!reloadable()) return false;
  State& s = *state_;
  absl::MutexLock reloading(&s.reload_mu);
  absl::StatusOr<std::string> text = ReadKeyFile(s.file, s.flag);
  // An unreadable file is remembered by its error, so it is reported once.
  const std::string seen = text.ok() ? *text : StrCat("\n", text.status().message());
  switch (s.seen_file.LookAt(seen, when)) {
    case ReloadedFile::Look::kTaken: {
      absl::MutexLock lock(&s.mu);
      s.file_refused = false;
      return false;
    }
    case ReloadedFile::Look::kRefused:
    case ReloadedFile::Look::kWait:
      return false;
    case ReloadedFile::Look::kTry:
      break;
  }
  absl::StatusOr<std::vector<std::string>> keys =
      text.ok() ? ParseKeys(*text, s.source) : text.status();
  absl::MutexLock lock(&s.mu);
  if (!keys.ok()) {
    s.seen_file.Refused(seen);
    s.file_refused = true;
    ++s.reload_errors;
    return keys.status();
  }
  s.keys = *std::move(keys);
  s.seen_file.Took(seen);
  s.file_refused = false;
  ++s.reloads;
  return true;
}

std::string KeySet::source() const { return open() ? "" : state_->source; }

bool KeySet::reloadable() const { return !open() && !state_->file.empty(); }

KeyStats KeySet::stats() const {
  KeyStats stats;
  if (open()) return stats;
  absl::ReaderMutexLock lock(&state_->mu);
  stats.keys = static_cast<int32_t>(state_->keys.size());
  stats.refused_missing = state_->refused_missing.load(std::memory_order_relaxed);
  stats.refused_invalid = state_->refused_invalid.load(std::memory_order_relaxed);
  stats.reloads = state_->reloads;
  stats.reload_errors = state_->reload_errors;
  stats.file_refused = state_->file_refused;
  return stats;
}

grpc::Status Authorize(const KeySet& keys, std::string_view what,
                       const grpc::CallbackServerContext& context) {
  if (keys.open()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("authorization");
  const std::string_view presented =
      found == metadata.end() ? std::string_view()
                              : std::string_view(found->second.data(), found->second.size());
  switch (keys.Check(presented)) {
    case KeyCheck::kAdmitted:
      return grpc::Status::OK;
    case KeyCheck::kMissing:
      return grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          StrCat("missing ", what, ": send metadata 'authorization: Bearer <key>'"));
    case KeyCheck::kInvalid:
      break;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, StrCat("invalid ", what));
}

grpc::ServerUnaryReactor* RefuseUnary(const KeySet& keys, std::string_view what,
                                      grpc::CallbackServerContext* context) {
  grpc::Status status = Authorize(keys, what, *context);
  if (status.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

std::shared_ptr<grpc::Channel> KeyedChannel(const std::string& target, const KeySet& keys,
                                            const grpc::ChannelArguments& args,
                                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  if (keys.open()) return grpc::CreateCustomChannel(target, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerInterceptorFactory>(keys));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace tokenfab
